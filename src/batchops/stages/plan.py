"""plan: write plan.json, the contract of the run (what will happen, with which files)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from batchops.artifacts import sha256_of_file, write_json_atomic
from batchops.config import ProviderConfig, effective_config
from batchops.errors import RunParameterError
from batchops.runcontext import RunContext
from batchops.runindex import record_run

SNAPSHOT_RULE = (
    "conf.snapshot_date if given (YYYY-MM-DD); else a scheduled run uses its data_interval_end date; "
    "else a manual run uses the date it was triggered for"
)


def describe_stages(ctx: RunContext) -> list[dict[str, Any]]:
    """Each stage with its inputs, outputs and guardrails, in run order."""
    pipeline, provider = ctx.pipeline, ctx.provider
    entities = sorted(provider.entities)
    landing = {name: str(ctx.landing_dir / spec.file) for name, spec in provider.entities.items()}
    described: dict[str, dict[str, Any]] = {
        "plan": {"outputs": ["plan.json"]},
        "wait_for_drop": {"inputs": landing | ({"ready_marker": str(ctx.landing_dir / provider.ready_marker)}
                                               if provider.ready_marker else {}),
                          "guardrails": {"scheduled runs wait up to minutes": provider.landing_timeout_minutes,
                                         "poke every seconds": provider.landing_poke_seconds,
                                         "manual runs": "do not wait"}},
        "ingest": {"inputs": landing, "outputs": [f"staging/{e}.parquet" for e in entities] + ["ingest_report.json"]},
        "validate": {"inputs": [f"staging/{e}.parquet" for e in entities],
                     "outputs": ["dq_report.json", "dq_report.md"],
                     "guardrails": provider.dq.model_dump()},
        "dq_gate": {"inputs": ["dq_report.json"], "guardrails": "skips everything downstream when DQ fails"},
        "load": {"inputs": [f"staging/{e}.parquet" for e in entities],
                 "outputs": [f"warehouse {provider.provider_id}.duckdb: {e}" for e in entities]},
        "build_features": {"inputs": ["warehouse: customers, transactions"],
                           "outputs": ["warehouse: features, labels"],
                           "sql": pipeline.features.sql if pipeline.features else []},
        "train": {"inputs": ["warehouse: features, labels"],
                  "outputs": ["metrics.json", "model/", "roc_curve.png", "reliability.png"],
                  "guardrails": pipeline.guardrails.model_dump(), "label": pipeline.label.model_dump()},
        "wait_for_model": {"inputs": [f"approved model of {provider.provider_id}/{pipeline.model_pipeline}"],
                           "guardrails": pipeline.wait_for_model.model_dump()},
        "score": {"inputs": ["warehouse: features", "approved model", "the model's training profile"],
                  "outputs": ["drift_report.json", "drift.png", "predictions/predictions.parquet",
                              "predictions/predictions.csv", "warehouse: predictions"],
                  "guardrails": {"drift": pipeline.guardrails.drift.model_dump()}},
        "summarize": {"outputs": ["run_summary.md"]},
    }
    return [{"stage": stage, **described[stage]} for stage in pipeline.stages]


def file_hashes(files: dict[str, Path | None]) -> dict[str, dict[str, str]]:
    return {role: {"path": str(path), "sha256": sha256_of_file(path)}
            for role, path in files.items() if path is not None and path.exists()}


def write_plan(ctx: RunContext, snapshot_source: str, config_files: dict[str, Path | None]) -> dict[str, Any]:
    """Write plan.json; returns the plan document."""
    sql_files = {f"sql:{name}": ctx.settings.sql_dir / name
                 for name in (ctx.pipeline.features.sql if ctx.pipeline.features else [])}
    plan = {
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "run_dir": str(ctx.run_dir),
        "provider": ctx.provider.provider_id,
        "pipeline": ctx.pipeline.pipeline_id,
        "snapshot_date": ctx.snapshot_date.isoformat(),
        "snapshot_date_source": snapshot_source,
        "snapshot_date_rule": SNAPSHOT_RULE,
        "planned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": file_hashes({**config_files, **sql_files}),
        "stages": describe_stages(ctx),
        "effective_config": effective_config(ctx.provider, ctx.pipeline),
    }
    write_json_atomic(ctx.run_dir / "plan.json", plan)
    record_run(ctx.settings.runs_dir, ctx.dag_id, ctx.run_id, ctx.snapshot_date, "RUNNING")  # the calendar's cell
    ctx.logger("plan").event("planned", snapshot_date=plan["snapshot_date"], source=snapshot_source,
                             stages=list(ctx.pipeline.stages))
    return plan


def check_scheduled_start(provider: ProviderConfig, run_type: str, snapshot_date: date) -> None:
    """A scheduled run before the provider's start_date is refused with the reason; manual runs and
    backfills take any date (the DAG itself starts in the year 1000, so no run is created without tasks)."""
    if run_type == "scheduled" and snapshot_date < provider.start_date:
        raise RunParameterError(
            f"provider {provider.provider_id}'s scheduled runs start with snapshot {provider.start_date} "
            f"(start_date); this scheduled run is for {snapshot_date}. Trigger it manually with a snapshot_date "
            "to process an earlier drop, or move start_date.")
