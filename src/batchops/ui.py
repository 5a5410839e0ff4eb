"""The BatchOps pages inside the Airflow UI: a run tab with the run's artifacts, and an overview of
every provider x pipeline. A FastAPI app mounted by plugins/batchops_plugin.py; every route is
guarded by Airflow's own authorization (a plugin app gets none by itself)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from batchops.artifacts import run_dir_for
from batchops.errors import RunParameterError
from batchops.runlog import read_events
from batchops.settings import Settings

URL_PREFIX = "/batchops"
DOWNLOADABLE = {"roc_curve.png", "score_histogram.png", "predictions/predictions.csv",
                "predictions/predictions.parquet", "dq_report.md", "dq_report.json", "plan.json", "metrics.json",
                "run_summary.md", "logs.jsonl"}
STYLE = """body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #cbd5e0;padding:3px 8px;font-size:13px;text-align:left}th{background:#edf2f7}
.fail{color:#c53030;font-weight:bold}.pass{color:#2f855a}.banner{padding:10px;border-radius:6px;margin-bottom:12px}
.blocked,.failed{background:#fed7d7}.complete{background:#c6f6d5}pre{background:#f7fafc;padding:8px;overflow:auto;
max-height:320px;font-size:12px}img{max-width:460px;margin-right:12px}"""


def _settings() -> Settings:
    return Settings.from_env(default_home=Path(__file__).resolve().parents[2])


def _run_folder(dag_id: str, run_id: str) -> Path:
    try:
        folder = run_dir_for(_settings().runs_dir, dag_id, run_id)
    except RunParameterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    return folder


def _read(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    return json.loads(text) if name.endswith(".json") else text


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def render_run_page(dag_id: str, run_id: str, folder: Path) -> str:
    """The run tab: outcome first, then DQ, model, plots, predictions, plan, log tail, summary."""
    summary = _read(folder, "run_summary.md")
    dq = _read(folder, "dq_report.json")
    metrics = _read(folder, "metrics.json")
    plan = _read(folder, "plan.json")
    parts = [f"<html><head><title>BatchOps {_esc(dag_id)}</title><style>{STYLE}</style></head><body>",
             f"<h2>BatchOps · {_esc(dag_id)}</h2><p>run <code>{_esc(run_id)}</code></p>"]
    if summary:
        first, _, rest = summary.partition("\n")
        outcome = first.replace("# Run summary:", "").strip()
        why = next((line.strip("* ") for line in rest.splitlines() if line.startswith("**")), "")
        parts.append(f'<div class="banner {outcome.lower()}"><b>{_esc(outcome)}</b>: {_esc(why)}</div>')
    else:
        parts.append('<div class="banner">Run in progress or not summarized yet.</div>')
    if dq:
        verdict = "PASSED" if dq["passed"] else "FAILED"
        checks = sorted(dq["checks"], key=lambda c: c["passed"])
        rows = [[f'<span class="{"pass" if c["passed"] else "fail"}">{"PASS" if c["passed"] else "FAIL"}</span>',
                 _esc(c["entity"]), _esc(c["column"] or ""), _esc(c["check"]), _esc(c["observed"]),
                 _esc(c["threshold"]), _esc(c.get("detail", ""))] for c in checks]
        parts.append(f"<h3>Data quality: {verdict}</h3>"
                     + _table(["result", "entity", "column", "check", "observed", "threshold", "detail"], rows))
    if metrics:
        promotion = metrics.get("promotion", {})
        champion = promotion.get("champion") or {}
        parts.append("<h3>Model</h3>" + _table(
            ["model", "ROC-AUC", "accuracy", "PR-AUC", "brier", "decision", "compared with"],
            [[_esc(metrics.get("model_id")), f"{metrics['roc_auc']:.4f}", f"{metrics['accuracy']:.4f}",
              f"{metrics['pr_auc']:.4f}", f"{metrics['brier']:.4f}",
              _esc(f"{promotion.get('status')}: {promotion.get('reason')}"), _esc(champion.get("model_id", "-"))]]))
    images = [name for name in ("roc_curve.png", "score_histogram.png") if (folder / name).exists()]
    if images:
        parts.append("<h3>Plots</h3>" + "".join(
            f'<img alt="{name}" src="{URL_PREFIX}/files/{_esc(dag_id)}/{_esc(run_id)}/{name}">' for name in images))
    predictions = folder / "predictions" / "predictions.csv"
    if predictions.exists():
        with predictions.open(encoding="utf-8") as handle:
            lines = [next(handle, "") for _ in range(51)]
        header, *rows = [line.rstrip("\n").split(",") for line in lines if line]
        parts.append(f"<h3>Predictions (first {len(rows)})</h3><p><a href='{URL_PREFIX}/files/{_esc(dag_id)}/"
                     f"{_esc(run_id)}/predictions/predictions.csv'>download all (CSV)</a></p>"
                     + _table(header, [[_esc(c) for c in row] for row in rows]))
    if plan:
        parts.append(f"<h3>Plan</h3><p>snapshot_date <b>{_esc(plan['snapshot_date'])}</b> "
                     f"({_esc(plan['snapshot_date_source'])}); stages: {_esc(' → '.join(s['stage'] for s in plan['stages']))}"
                     "</p>" + _table(["file", "sha256"], [[_esc(role), _esc(f["sha256"][:16])]
                                                           for role, f in plan["files"].items()]))
    events = read_events(folder / "logs.jsonl")[-20:]
    if events:
        parts.append("<h3>Log (last 20 events)</h3><pre>" + _esc("\n".join(json.dumps(e) for e in events)) + "</pre>")
    if summary:
        parts.append("<h3>Run summary</h3><pre>" + _esc(summary) + "</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def _run_link(dag_id: str, run_id: str) -> str:
    return f'<a href="{URL_PREFIX}/runs/{_esc(dag_id)}/{_esc(run_id)}">{_esc(run_id)}</a>'


def render_overview(rows: list[dict[str, Any]], config_errors: list[str]) -> str:
    table_rows = []
    for row in rows:
        last = _run_link(row["dag_id"], row["run_id"]) if row.get("run_id") else "-"
        earlier = " ".join(_run_link(row["dag_id"], run_id) for run_id in row.get("earlier_runs", []))
        table_rows.append([_esc(row["dag_id"]), last, _esc(row.get("outcome", "-")), _esc(row.get("snapshot_date", "-")),
                           _esc(row.get("dq", "-")), _esc(row.get("approved_model", "-")),
                           _esc(row.get("rows_scored", "-")), _esc(row.get("next_run", "-")), earlier or "-"])
    errors = "".join(f"<li class='fail'>{_esc(e)}</li>" for e in config_errors)
    return (f"<html><head><title>BatchOps</title><style>{STYLE}</style></head><body><h2>BatchOps providers</h2>"
            + _table(["DAG", "last run", "outcome", "snapshot", "DQ", "approved model (AUC, trained on)",
                      "rows scored", "next scheduled run", "earlier runs"], table_rows)
            + (f"<h3>Configs with errors</h3><ul>{errors}</ul>" if errors else "") + "</body></html>")


def approved_model_text(settings: Settings, provider_id: str, pipeline: str) -> str:
    """The provider's current approved model of the pipeline, from its registry; never waits long."""
    import dataclasses
    from datetime import date

    from batchops.errors import WarehouseError
    from batchops.models import find_approved_model

    quick = dataclasses.replace(settings, warehouse_lock_timeout_seconds=1.0)
    try:
        model = find_approved_model(quick, provider_id, pipeline, date(2100, 1, 1))
    except WarehouseError:
        return "warehouse busy (a run is writing); reload"
    if model is None:
        return "none approved yet"
    auc = f"{model.roc_auc:.3f}" if model.roc_auc is not None else "?"
    return f"{model.model_id} (AUC {auc}, trained on {model.training_snapshot})"


def next_runs(dag_ids: list[str]) -> dict[str, str]:
    """Next scheduled run of each DAG from Airflow's metadata DB (api-server process only)."""
    try:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found = session.execute(select(DagModel.dag_id, DagModel.next_dagrun_create_after, DagModel.is_paused)
                                    .where(DagModel.dag_id.in_(dag_ids))).all()
    except Exception:  # noqa: BLE001 - the page stays useful without the metadata DB
        return {}
    return {dag_id: ("paused" if paused else (str(after)[:16] if after else "not scheduled"))
            for dag_id, after, paused in found}


def overview_rows(settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per provider x pipeline from the configs, the run folders, the registry and the scheduler."""
    from batchops.config import load_config_set

    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    pairs = config_set.dag_pairs()
    scheduled = next_runs([f"{p.provider_id}__{q.pipeline_id}" for p, q in pairs])
    rows = []
    for provider, pipeline in pairs:
        dag_id = f"{provider.provider_id}__{pipeline.pipeline_id}"
        row: dict[str, Any] = {"dag_id": dag_id, "next_run": scheduled.get(dag_id, "-"),
                               "approved_model": approved_model_text(settings, provider.provider_id,
                                                                     pipeline.model_pipeline)}
        folder = settings.runs_dir / dag_id
        runs = sorted((p for p in folder.iterdir() if (p / "plan.json").exists()),
                      key=lambda p: p.stat().st_mtime) if folder.exists() else []
        if runs:
            latest = runs[-1]
            row["earlier_runs"] = [json.loads((p / "plan.json").read_text())["run_id"] for p in runs[-6:-1][::-1]]
            plan = json.loads((latest / "plan.json").read_text())
            row.update(run_id=plan["run_id"], snapshot_date=plan["snapshot_date"])
            summary = _read(latest, "run_summary.md")
            row["outcome"] = summary.split("\n", 1)[0].replace("# Run summary:", "").strip() if summary else "running"
            dq = _read(latest, "dq_report.json")
            row["dq"] = ("PASSED" if dq["passed"] else "FAILED") if dq else "-"
            scored = [e for e in read_events(latest / "logs.jsonl") if e.get("event") == "score_finished"]
            row["rows_scored"] = scored[-1]["rows"] if scored else "-"
        rows.append(row)
    return rows, [str(issue) for issue in config_set.issues]


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(title="BatchOps", description="BatchOps run artifacts and provider health")
    read_dag = Depends(requires_access_dag(method="GET"))

    @app.get("/", response_class=HTMLResponse, dependencies=[read_dag])
    def overview() -> str:
        rows, errors = overview_rows(_settings())
        return render_overview(rows, errors)

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[read_dag])
    def run_page(dag_id: str, run_id: str) -> str:
        if "__" not in dag_id:
            return (f"<html><body style='font-family:sans-serif'><p>{_esc(dag_id)} is not a BatchOps DAG: "
                    "this tab shows BatchOps runs only.</p></body></html>")
        folder = _run_folder(dag_id, run_id)
        if not (folder / "plan.json").exists():
            raise HTTPException(status_code=404, detail=f"no BatchOps run {run_id!r} of {dag_id!r}")
        return render_run_page(dag_id, run_id, folder)

    @app.get("/files/{dag_id}/{run_id}/{name:path}", dependencies=[read_dag])
    def run_file(dag_id: str, run_id: str, name: str) -> FileResponse:
        if name not in DOWNLOADABLE:
            raise HTTPException(status_code=404, detail=f"{name!r} is not a BatchOps artifact")
        folder = _run_folder(dag_id, run_id)
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise HTTPException(status_code=404, detail=f"{name} not found for this run")
        return FileResponse(path)

    return app
