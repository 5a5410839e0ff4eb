"""What the BatchOps pages show, built from a run folder's artifacts, and rendered with Jinja2.

Every value from an artifact is data: templates autoescape it (attribute and text context alike),
CSS classes come from fixed tables, never from artifact text, and every file read goes through
safe_files (no links, size caps, tails of logs). A section whose artifact is refused says so and
the rest of the page still renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchops.runindex import outcome_of_summary
from batchops.runlog import parse_events
from batchops.ui import safe_files
from batchops.ui.safe_files import UnsafeArtifactError

URL_PREFIX = "/batchops"
DOWNLOADABLE = {"roc_curve.png", "score_histogram.png", "reliability.png", "drift.png", "drift_report.json",
                "predictions/predictions.csv",
                "predictions/predictions.parquet", "dq_report.md", "dq_report.json", "plan.json", "metrics.json",
                "run_summary.md", "logs.jsonl"}
OUTCOME_CLASSES = {"COMPLETE": "complete", "BLOCKED": "blocked", "FAILED": "failed", "NO DROP": "nodrop"}
PREDICTION_ROWS = 50
LOG_EVENTS = 20


@cache
def _templates():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **values: Any) -> str:
    return _templates().get_template(template).render(**values)


def run_url(dag_id: str, run_id: str) -> str:
    return f"{URL_PREFIX}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def file_url(dag_id: str, run_id: str, name: str) -> str:
    return f"{URL_PREFIX}/files/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/{name}"


def number(value: Any, digits: int = 4) -> str:
    """A metric as text; a value that is not a number is shown as it is (escaped by the template)."""
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


outcome_of = outcome_of_summary  # (outcome, why) from run_summary.md; ('RUNNING', '') before summarize wrote it


def _section(refusals: list[str], build: Callable[[], Any], artifact: str = "an artifact of this run") -> Any:
    """Build one section; a refused artifact becomes a note on the page (naming the file) instead of an error."""
    try:
        return build()
    except UnsafeArtifactError as exc:
        refusals.append(str(exc))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        refusals.append(f"{artifact} has an unexpected shape ({type(exc).__name__}: {exc}); not shown")
    return None


def _dq(folder: Path) -> dict[str, Any] | None:
    report = safe_files.read_json(folder, "dq_report.json")
    if report is None:
        return None
    checks = [{"passed": check["passed"] is True, "entity": check["entity"], "column": check.get("column") or "",
               "check": check["check"], "observed": check.get("observed"), "threshold": check.get("threshold"),
               "detail": check.get("detail", "")} for check in report["checks"]]
    return {"verdict": "PASSED" if report["passed"] is True else "FAILED",
            "failing": [c for c in checks if not c["passed"]], "passing": [c for c in checks if c["passed"]]}


FIGURE_MEANING = {
    "out_of_time": "fitted on the earlier windows only, scored on the latest labelled window: how well it would "
                   "have predicted what then happened",
    "holdout": "customers held out of the same training windows",
}
COEFFICIENTS_SHOWN = 12


def model_card(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a model card shows, from metrics.json: the figures with what each measures, lift, calibration,
    the standardised coefficients and the promotion decision."""
    promotion = metrics.get("promotion") or {}
    champion = promotion.get("champion") or {}
    forward = metrics.get("out_of_time") or {}
    figures = []
    if forward.get("available"):
        figures.append({"name": "out of time", "meaning": FIGURE_MEANING["out_of_time"],
                        "window": forward.get("label_period", ""), "roc_auc": number(forward.get("roc_auc")),
                        "pr_auc": number(forward.get("pr_auc")), "brier": number(forward.get("brier")),
                        "accuracy": number(forward.get("accuracy")), "n": forward.get("n")})
    figures.append({"name": "customer holdout", "meaning": FIGURE_MEANING["holdout"],
                    "window": ", ".join(str(d) for d in metrics.get("feature_dates", [])),
                    "roc_auc": number(metrics.get("roc_auc")), "pr_auc": number(metrics.get("pr_auc")),
                    "brier": number(metrics.get("brier")), "accuracy": number(metrics.get("accuracy")),
                    "n": metrics.get("n_test")})
    lift = forward.get("lift") if forward.get("available") else metrics.get("holdout_lift")
    coefficients = metrics.get("coefficients") or []
    return {
        "model_id": metrics.get("model_id"), "status": promotion.get("status"), "reason": promotion.get("reason"),
        "judged_on": promotion.get("window", "holdout"), "champion": champion.get("model_id", "-"),
        "training_snapshot": metrics.get("training_snapshot"), "feature_dates": metrics.get("feature_dates", []),
        "calibration": (metrics.get("model_settings") or {}).get("calibration", "none"),
        "figures": figures, "forward_missing": None if forward.get("available") else forward.get("reason"),
        "lift": [{"decile": row.get("decile"), "customers": row.get("customers"), "positives": row.get("positives"),
                  "rate": number(row.get("rate")), "lift": number(row.get("lift"), 2),
                  "cumulative_capture": number(row.get("cumulative_capture"), 3)} for row in (lift or [])],
        "lift_on": "out-of-time window" if forward.get("available") else "customer holdout",
        "coefficients": [{"input": c.get("input"), "coefficient": number(c.get("coefficient"), 3)}
                         for c in coefficients[:COEFFICIENTS_SHOWN]],
        "more_coefficients": max(0, len(coefficients) - COEFFICIENTS_SHOWN),
        "features": metrics.get("features", []), "reliability_url": None,
    }


def _model(folder: Path) -> dict[str, Any] | None:
    metrics = safe_files.read_json(folder, "metrics.json")
    return model_card(metrics) if isinstance(metrics, dict) else None


def drift_card(report: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": report.get("verdict"), "summary": report.get("summary"), "model_id": report.get("model_id"),
            "features": [{"feature": f.get("feature"), "psi": number(f.get("psi"), 3),
                          "null_training": number(f.get("null_share_training"), 3),
                          "null_now": number(f.get("null_share_now"), 3), "drifted": bool(f.get("drifted")),
                          "why": f.get("why", "")} for f in (report.get("features") or [])[:15]]}


def _drift(folder: Path) -> dict[str, Any] | None:
    report = safe_files.read_json(folder, "drift_report.json")
    return drift_card(report) if isinstance(report, dict) else None


def _predictions(folder: Path) -> dict[str, Any] | None:
    lines = safe_files.read_head_lines(folder, "predictions/predictions.csv", PREDICTION_ROWS + 1)
    if not lines:
        return None
    import csv

    header, *rows = list(csv.reader(lines))
    if "score" in header:  # four decimals are what a person compares; the file keeps every digit
        at = header.index("score")
        rows = [[_rounded(cell) if i == at else cell for i, cell in enumerate(row)] for row in rows]
    return {"header": header, "rows": rows}


def _rounded(cell: str) -> str:
    try:
        return f"{float(cell):.4f}"
    except ValueError:
        return cell


def _plan(folder: Path) -> dict[str, Any] | None:
    plan = safe_files.read_json(folder, "plan.json")
    if plan is None:
        return None
    return {"snapshot_date": plan["snapshot_date"], "source": plan.get("snapshot_date_source", ""),
            "stages": " → ".join(str(stage["stage"]) for stage in plan.get("stages", [])),
            "files": [(role, str(entry.get("sha256") or "")[:16]) for role, entry in plan.get("files", {}).items()]}


LOG_LEVELS = {"all": 0, "warning": 30, "error": 40}
LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
LEVEL_CLASSES = {"WARNING": "warn", "ERROR": "fail", "CRITICAL": "fail"}


def _log_tail(folder: Path, level: str = "all", notes: list[str] | None = None) -> list[dict[str, Any]]:
    """The run's last events at or above `level`, as table rows: time, level, stage, event, the rest. An event
    too long for the tail the page reads is named in `notes`, not silently left out."""
    floor = LOG_LEVELS.get(level, 0)
    tail = safe_files.read_tail(folder, "logs.jsonl")
    if tail is None:
        return []
    lines, cut = tail
    if cut and notes is not None:
        notes.append(f"logs.jsonl: {cut}; download logs.jsonl to read it")
    events = parse_events(lines)
    rows = []
    for event in events:
        name = str(event.get("level", "INFO")).upper()
        if LEVEL_NUMBERS.get(name, 20) < floor:
            continue
        details = {k: v for k, v in event.items() if k not in ("ts", "level", "stage", "event", "host", "pid")}
        rows.append({"time": str(event.get("ts", ""))[11:19], "level": name, "level_class": LEVEL_CLASSES.get(name, ""),
                     "stage": event.get("stage", ""), "event": event.get("event", ""),
                     "details": "; ".join(f"{k}={json.dumps(v, default=str)[:300]}" for k, v in details.items())})
    return rows[-LOG_EVENTS:]


def summary_html(dag_id: str, run_id: str, summary: str) -> str:
    """run_summary.md as HTML. It quotes provider data (a CSV header, an error message), so only what BatchOps
    itself links survives: raw HTML is escaped, markdown-it's own link validation makes a link only of a target
    that is one of the run's files (DOWNLOADABLE), in any link syntax (inline, reference, autolink), and that
    link points at the file route; images are dropped (the run's own are shown above)."""
    from markdown_it import MarkdownIt

    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    markdown.validateLink = lambda url: url in DOWNLOADABLE
    tokens = markdown.parse(summary)
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        kept = []
        for child in token.children:
            if child.type == "image":
                continue
            if child.type == "link_open":
                child.attrs = {"href": file_url(dag_id, run_id, str(child.attrs.get("href", "")))}
            kept.append(child)
        token.children = kept
    return markdown.renderer.render(tokens, markdown.options, {})


def render_run_page(dag_id: str, run_id: str, folder: Path, history: Callable[[str], list] | None = None,
                    level: str = "all", airflow_state: str | None = None) -> str:
    """The run tab: outcome first, then DQ, the model card (with the champion history from `history(model_id)`),
    drift, plots, predictions, plan, log tail, summary."""
    refusals: list[str] = []
    notes: list[str] = []
    summary = _section(refusals, lambda: safe_files.read_text(folder, "run_summary.md"), "run_summary.md")
    outcome, why = outcome_of(summary)
    images = [name for name in ("roc_curve.png", "reliability.png", "drift.png", "score_histogram.png") if _section(
        refusals, lambda name=name: _is_servable(folder, name))]
    model = _section(refusals, lambda: _model(folder), "metrics.json")
    if model and "reliability.png" in images:
        model["reliability_url"] = file_url(dag_id, run_id, "reliability.png")
        images.remove("reliability.png")  # shown in the model card
    drift = _section(refusals, lambda: _drift(folder), "drift_report.json")
    shown_model_id = (model or {}).get("model_id") or (drift or {}).get("model_id")
    champions = _section(refusals, lambda: history(shown_model_id), "the model registry") if history and shown_model_id else None
    return render(
        "run.html", dag_id=dag_id, run_id=run_id, outcome=outcome, why=why,
        outcome_class=OUTCOME_CLASSES.get(outcome, "unknown"), summary=summary,
        dq=_section(refusals, lambda: _dq(folder), "dq_report.json"), model=model, drift=drift, champions=champions or [],
        images=[(name, file_url(dag_id, run_id, name)) for name in images],
        predictions=_section(refusals, lambda: _predictions(folder), "predictions/predictions.csv"),
        predictions_url=file_url(dag_id, run_id, "predictions/predictions.csv"),
        plan=_section(refusals, lambda: _plan(folder), "plan.json"),
        events=_section(refusals, lambda: _log_tail(folder, level, notes), "logs.jsonl") or [], level=level if level in LOG_LEVELS else "all",
        level_urls={name: f"{run_url(dag_id, run_id)}?level={name}" for name in LOG_LEVELS},
        summary_html=_section(refusals, lambda: summary_html(dag_id, run_id, summary), "run_summary.md") if summary else None,
        refusals=refusals, notes=notes, resumed=airflow_state in ("running", "queued") and outcome != "RUNNING")


def _is_servable(folder: Path, name: str) -> bool:
    try:
        with safe_files.open_artifact(folder, name, safe_files.DOWNLOAD_LIMIT):
            return True
    except FileNotFoundError:
        return False


def render_overview(rows: list[dict[str, Any]], config_errors: list[str], cards: list[dict[str, Any]] | None = None,
                    history: dict[str, Any] | None = None, provider_id: str = "") -> str:
    """A provider's page: its DAGs (latest and earlier runs by snapshot date), model history and model cards."""
    shown = []
    for row in rows:
        earlier_ids = row.get("earlier_runs", [])
        outcomes = row.get("earlier_outcomes", []) or ["unknown"] * len(earlier_ids)
        snapshots = row.get("earlier_snapshots", []) or ["?"] * len(earlier_ids)
        shown.append({**row, "last_url": run_url(row["dag_id"], row["run_id"]) if row.get("run_id") else None,
                      "earlier": [(run_id, run_url(row["dag_id"], run_id), OUTCOME_CLASSES.get(outcome, "unknown"),
                                   outcome, snapshot)
                                  for run_id, outcome, snapshot in zip(earlier_ids, outcomes, snapshots, strict=False)],
                      "outcome_class": OUTCOME_CLASSES.get(row.get("outcome", ""), "unknown")})
    return render("provider.html", rows=shown, config_errors=config_errors, cards=cards or [],
                  history=history_view(history or {"training": [], "scoring": []}), provider_id=provider_id,
                  home_url=f"{URL_PREFIX}/")


def render_calendar(page: dict[str, Any], elapsed_seconds: float) -> str:
    return render("calendar.html", **page, elapsed_ms=elapsed_seconds * 1000, provider_url=provider_url)


def provider_url(provider_id: str) -> str:
    return f"{URL_PREFIX}/providers/{quote(provider_id, safe='')}"


def _figure(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def history_view(history: dict[str, Any]) -> dict[str, Any]:
    """The model history's rows with their figures as text, and its two charts (inline SVG: the pages load
    nothing, and the SVG is built from numbers and escaped text only)."""
    training = [{**t, "roc_auc_text": _figure(t.get("roc_auc")), "oot_text": _figure(t.get("out_of_time_roc_auc")),
                 "positive_rate_text": _figure(t.get("positive_rate"))} for t in history.get("training", [])]
    scoring = [{**s, "max_psi_text": _figure(s.get("max_psi")), "mean_text": _figure(s.get("mean_score")),
                "p10_text": _figure(s.get("p10")), "p50_text": _figure(s.get("p50")), "p90_text": _figure(s.get("p90"))}
               for s in history.get("scoring", [])]
    decision_colours = {"approved": "#38a169", "rejected": "#e53e3e"}
    training_chart = line_chart(
        [t["date"] for t in training],
        [("holdout AUC", "#2b6cb0", [t.get("roc_auc") for t in training]),
         ("out-of-time AUC", "#805ad5", [t.get("out_of_time_roc_auc") for t in training])],
        (0.5, 1.0), points=[decision_colours.get(str(t.get("decision")), "#a0aec0") for t in training])
    scoring_chart = line_chart(
        [s["date"] for s in scoring],
        [("p90 score", "#a0aec0", [s.get("p90") for s in scoring]), ("mean score", "#2b6cb0",
                                                                     [s.get("mean_score") for s in scoring]),
         ("p10 score", "#a0aec0", [s.get("p10") for s in scoring]),
         ("max PSI", "#dd6b20", [s.get("max_psi") for s in scoring])], (0.0, 1.0))
    return {"training": training, "scoring": scoring, "training_chart": training_chart if training else "",
            "scoring_chart": scoring_chart if scoring else ""}


def line_chart(labels: list[str], series: list[tuple[str, str, list[Any]]], y_range: tuple[float, float],
               points: list[str] | None = None, width: int = 760, height: int = 200) -> str:
    """An SVG line chart: one polyline per series over the labels (dates), y clipped to y_range, the first
    series' points coloured by `points` (e.g. the registry decision), a legend, and the first and last label."""
    from markupsafe import escape

    left, right, top, bottom = 40, 10, 10, 40
    low, high = y_range
    count = len(labels)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / (count - 1) if count > 1 else 0.5)

    def y(value: float) -> float:
        clipped = min(max(float(value), low), high)
        return top + (height - top - bottom) * (1 - (clipped - low) / (high - low))

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for tick in (low, (low + high) / 2, high):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e2e8f0"/>'
                     f'<text x="4" y="{y(tick) + 4:.1f}" font-size="10">{tick:.2f}</text>')
    for _name, colour, values in series:
        coordinates = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if isinstance(v, int | float))
        if coordinates:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coordinates}"/>')
            parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="1.5" fill="{colour}"/>'
                      for i, v in enumerate(values) if isinstance(v, int | float)]  # a lone run is a dot
    if points and series:
        for i, (value, colour) in enumerate(zip(series[0][2], points, strict=False)):
            if isinstance(value, int | float):
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}"/>')
    if labels:
        parts.append(f'<text x="{left}" y="{height - 22}" font-size="10">{escape(labels[0])}</text>'
                     f'<text x="{width - right}" y="{height - 22}" font-size="10" text-anchor="end">{escape(labels[-1])}</text>')
    offset = left
    for name, colour, _ in series:
        parts.append(f'<rect x="{offset}" y="{height - 12}" width="10" height="4" fill="{colour}"/>'
                     f'<text x="{offset + 14}" y="{height - 8}" font-size="10">{escape(name)}</text>')
        offset += 14 + 7 * len(name) + 12
    parts.append("</svg>")
    return "".join(parts)


def render_not_batchops(dag_id: str) -> str:
    return render("not_batchops.html", dag_id=dag_id)
