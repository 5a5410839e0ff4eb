"""summarize: run_summary.md, what happened in this run and where everything is."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from batchops.artifacts import read_json, write_text_atomic
from batchops.runcontext import RunContext
from batchops.runindex import outcome_of_summary, record_run, run_facts
from batchops.runlog import read_events

FAILED_STATE = "failed"


def stage_durations(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per stage from the last `stage_finished` event each stage logged."""
    durations = {}
    for event in events:
        if event.get("event") == "stage_finished" and "seconds" in event:
            durations[event["stage"]] = event["seconds"]
    return durations


def _optional_json(ctx: RunContext, name: str) -> dict[str, Any] | None:
    path = ctx.run_dir / name
    return read_json(path) if path.exists() else None


def last_errors(events: list[dict[str, Any]]) -> dict[str, str]:
    """The latest error each stage logged (stage_failed), for the summary's first lines."""
    return {e["stage"]: e.get("error", "") for e in events if e.get("event") == "stage_failed"}


SKIPPED_STATE = "skipped"
# A task that failed without logging why: its process never ran the stage's code to the end.
UNLOGGED_FAILURE = ("Airflow ended it before it could log a reason: its process was killed or ran out of memory, or "
                    "it could not reach the Airflow API server (a restart); Airflow's log of the task's last try says "
                    "which")
NO_DROP = "NO DROP"


def run_outcome(task_states: dict[str, str | None], dq_report: dict[str, Any] | None,
                errors: dict[str, str] | None = None, missing_files: list[str] | None = None,
                landing_timeout_minutes: int | None = None) -> tuple[str, str]:
    """(COMPLETE | BLOCKED | FAILED | NO DROP, why)."""
    failed = [t for t, s in task_states.items() if s == FAILED_STATE]
    if task_states.get("wait_for_drop") == SKIPPED_STATE and not failed:
        waited = f" within {landing_timeout_minutes} minutes" if landing_timeout_minutes else ""
        files = ", ".join(missing_files or []) or "the files (they arrived after the wait ended)"
        return NO_DROP, (f"the provider's drop did not arrive{waited}, so nothing was processed and nothing failed; "
                         f"missing: {files}. When the files are there, trigger a run for this snapshot_date (or "
                         "clear wait_for_drop)")
    if dq_report is not None and not dq_report["passed"]:
        bad = [c for c in dq_report["checks"] if not c["passed"]]
        why = "; ".join(f"{c['entity']}.{c['column'] or '*'} {c['check']} observed {c['observed']} vs threshold "
                        f"{c['threshold']}" for c in bad[:8])
        return "BLOCKED", f"data quality failed ({len(bad)} checks), downstream stages skipped: {why}"
    if failed:
        causes = "; ".join(f"{task}: {(errors or {}).get(task) or UNLOGGED_FAILURE}"[:400] for task in failed)
        return "FAILED", f"{causes}. Fix the cause, then clear the failed task(s) to resume"
    return "COMPLETE", "every stage succeeded"


def render_summary(ctx: RunContext, task_states: dict[str, str | None]) -> tuple[str, str]:
    plan = _optional_json(ctx, "plan.json") or {}
    dq = _optional_json(ctx, "dq_report.json")
    ingest = _optional_json(ctx, "ingest_report.json")
    metrics = _optional_json(ctx, "metrics.json")
    events = read_events(ctx.run_dir / "logs.jsonl")
    durations = stage_durations(events)
    missing = (ctx.provider.missing_landing_files(ctx.settings.data_dir, ctx.snapshot_date)
               if task_states.get("wait_for_drop") == SKIPPED_STATE else None)
    outcome, why = run_outcome(task_states, dq, last_errors(events), missing, ctx.provider.landing_timeout_minutes)
    lines = [f"# Run summary: {outcome}", "", f"**{why}**", "",
             f"- DAG: `{ctx.dag_id}`, run `{ctx.run_id}`",
             f"- provider `{ctx.provider.provider_id}`, pipeline `{ctx.pipeline.pipeline_id}`",
             f"- snapshot_date **{ctx.snapshot_date}** ({plan.get('snapshot_date_source', 'unknown source')})",
             f"- artifacts: `{ctx.run_dir}`", "", "## Tasks", "", "| task | state | seconds |", "|---|---|---|"]
    for task, state in task_states.items():
        lines.append(f"| {task} | {state or 'not run'} | {durations.get(task, '')} |")
    lines += ["", "## Data quality", ""]
    if dq is None:
        lines.append("No dq_report.json (validate did not run).")
    else:
        lines.append(f"Verdict: **{'PASSED' if dq['passed'] else 'FAILED'}** "
                     f"({dq['failed_checks']} of {len(dq['checks'])} checks failed), see [dq_report.md](dq_report.md).")
    if ingest:
        lines += ["", "| entity | rows | rejected rows | file |", "|---|---|---|---|"]
        for entity, result in ingest["entities"].items():
            lines.append(f"| {entity} | {result['rows']} | {result['rejected_rows']} | `{result['file']}` |")
    lines += ["", "## Model", ""]
    if metrics:
        promotion = metrics["promotion"]
        forward = metrics.get("out_of_time") or {}
        lines += [f"- model `{metrics['model_id']}`: **{promotion['status']}** ({promotion['reason']})"]
        if forward.get("available"):
            top = (forward.get("lift") or [{}])[0]
            lines.append(f"- **out of time** (a model fitted on the earlier windows only, scored on the latest "
                         f"labelled window {forward['label_period']}: how well it would have predicted what then "
                         f"happened): ROC-AUC {forward['roc_auc']:.4f}, PR-AUC {forward['pr_auc']:.4f}, brier "
                         f"{forward['brier']:.4f}, top-decile lift {top.get('lift')}")
        elif forward:
            lines.append(f"- out of time: not measured ({forward.get('reason')})")
        lines += [f"- **customer holdout** (customers held out of the same training windows): ROC-AUC "
                  f"{metrics['roc_auc']:.4f}, accuracy {metrics['accuracy']:.4f}, "
                  f"PR-AUC {metrics['pr_auc']:.4f}, brier {metrics['brier']:.4f}",
                  f"- n_train {metrics['n_train']}, n_test {metrics['n_test']}, trained on features at "
                  f"{', '.join(metrics['feature_dates'])}, label horizon "
                  f"{metrics.get('label', {}).get('horizon_days', '?')} days",
                  f"- features used ({len(metrics['features'])}): {', '.join(metrics['features'])}"]
        absent = metrics.get("features_absent") or {}
        lines.append(f"- optional features left out ({len(absent)}): "
                     + ("; ".join(f"{feature} ({why})" for feature, why in absent.items()) if absent else "none"))
        lines.append("- [metrics.json](metrics.json), [model/](model/)")
        for image, name in (("roc_curve.png", "ROC curve"), ("reliability.png", "reliability curve")):
            if (ctx.run_dir / image).exists():
                lines.append(f"\n![{name}]({image})")
    else:
        lines.append("No model trained in this run.")
    drift = _optional_json(ctx, "drift_report.json")
    lines += ["", "## Predictions", ""]
    if drift:
        lines.append(f"- drift guardrail: **{drift['verdict']}**: {drift['summary']} "
                     "([drift_report.json](drift_report.json))")
        if (ctx.run_dir / "drift.png").exists():
            lines.append("\n![drift](drift.png)\n")
    predictions = ctx.run_dir / "predictions" / "predictions.parquet"
    if predictions.exists():
        lines.append("- [predictions.parquet](predictions/predictions.parquet), "
                     "[predictions.csv](predictions/predictions.csv)")
        scored = [e for e in events if e.get("event") == "score_finished"]
        if scored:
            last = scored[-1]
            lines.append(f"- {last['rows']} customers scored with `{last['model_id']}`, mean score "
                         f"{last['mean_score']:.4f}")
            if last.get("features"):
                lines.append(f"- the model's features ({len(last['features'])}): {', '.join(last['features'])}")
        if (ctx.run_dir / "score_histogram.png").exists():
            lines.append("\n![score histogram](score_histogram.png)")
    else:
        lines.append("No predictions in this run.")
    return "\n".join(lines) + "\n", outcome


def summarize_unplanned(run_dir: Path, dag_id: str, run_id: str, task_states: dict[str, str | None]) -> Path:
    """run_summary.md of a run whose plan failed (no snapshot_date): FAILED, and plan's reason."""
    events = read_events(run_dir / "logs.jsonl")
    _, why = run_outcome(task_states, None, last_errors(events))
    lines = ["# Run summary: FAILED", "", f"**{why}**", "", f"- DAG: `{dag_id}`, run `{run_id}`",
             "- snapshot_date: not resolved (plan failed)", f"- artifacts: `{run_dir}`", "", "## Tasks", "",
             "| task | state |", "|---|---|", *(f"| {task} | {state or 'not run'} |" for task, state in task_states.items())]
    return write_text_atomic(run_dir / "run_summary.md", "\n".join(lines) + "\n")


def summarize(ctx: RunContext, task_states: dict[str, str | None]) -> dict[str, Any]:
    """Write run_summary.md; on a complete run, drop the staging Parquet (the warehouse has the data)."""
    text, outcome = render_summary(ctx, task_states)
    write_text_atomic(ctx.run_dir / "run_summary.md", text)
    record_run(ctx.settings.runs_dir, ctx.dag_id, ctx.run_id, ctx.snapshot_date, outcome, outcome_of_summary(text)[1],
               facts=run_facts(ctx.run_dir))
    if outcome == "COMPLETE":
        shutil.rmtree(ctx.staging_dir, ignore_errors=True)
    ctx.logger("summarize").event("run_summarized", outcome=outcome)
    return {"outcome": outcome, "failed": [t for t, s in task_states.items() if s == FAILED_STATE]}
