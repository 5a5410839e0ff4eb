"""The BatchOps pages inside the Airflow UI: a run tab with the run's artifacts, and an overview of
every provider x pipeline. A FastAPI app mounted by plugins/batchops_plugin.py; every route is
guarded by Airflow's own authorization (a plugin app gets none by itself)."""

from __future__ import annotations

import dataclasses
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from batchops.artifacts import run_dir_for, safe_run_id
from batchops.errors import RunParameterError, WarehouseBusyError, WarehouseDamagedError
from batchops.runlog import parse_events
from batchops.settings import Settings
from batchops.ui import safe_files
from batchops.ui.pages import (
    DOWNLOADABLE,
    file_url,
    number,
    outcome_of,
    render_calendar,
    render_not_batchops,
    render_overview,
    render_run_page,
)
from batchops.ui.safe_files import UnsafeArtifactError

EARLIER_RUNS = 5
# The pages quote provider data: whatever gets past the templates' escaping and the summary's link filter,
# the browser still loads nothing from elsewhere (no script at all; images and styles from the page only).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _settings() -> Settings:
    return Settings.from_env(default_home=Path(__file__).resolve().parents[3])


def _run_folder(dag_id: str, run_id: str) -> Path:
    """runs/<dag_id>/<run folder>, read only through safe_files, which refuses a link at any level below runs/."""
    runs = _settings().runs_dir
    try:
        run_dir_for(runs, dag_id, run_id)  # the same checks of the names as the tasks make
        return safe_files.rooted(runs, dag_id, safe_run_id(run_id))
    except RunParameterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc


def approved_model_text(settings: Settings, provider_id: str, pipeline: str, queue: str = "default") -> str:
    """The provider's current approved model of the pipeline, from its registry; never waits long,
    and a damaged, unreadable or elsewhere-held warehouse is named for what it is."""
    from batchops.models import find_approved_model
    from batchops.storage.warehouse import warehouse_path

    if not warehouse_path(settings, provider_id).exists() and any(settings.runs_dir.glob(f"{provider_id}__*/*")):
        # runs/ is shared by every host but warehouses stay on the worker of the provider's queue
        return (f"registry not on this host: the warehouse lives on the worker of queue {queue}; the model "
                "card below is read from runs/")
    quick = dataclasses.replace(settings, warehouse_lock_timeout_seconds=1.0)
    try:
        model = find_approved_model(quick, provider_id, pipeline, date(9999, 12, 31))
    except WarehouseBusyError:
        return "warehouse busy (a run is writing); reload"
    except WarehouseDamagedError as exc:
        return f"warehouse file damaged: {exc}"
    except Exception as exc:  # noqa: BLE001 - one provider's trouble must not break the page
        return f"registry unreadable ({type(exc).__name__}: {exc})"
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


def run_folders(dag_folder: Path) -> list[Path]:
    """The DAG's run folders, oldest first, as safe_files.rooted paths; a linked DAG folder has none, and links
    and other entries that are not folders are skipped."""
    if dag_folder.is_symlink():
        return []
    try:
        entries = list(os.scandir(dag_folder))
    except FileNotFoundError:
        return []
    # dot folders are BatchOps' own (the run index, folders being removed), never runs
    folders = [entry for entry in entries if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")]
    ordered = sorted(folders, key=lambda entry: entry.stat(follow_symlinks=False).st_mtime)
    return [safe_files.rooted(dag_folder.parent, dag_folder.name, entry.name) for entry in ordered]


def _outcome_or_unknown(folder: Path) -> str:
    try:
        return outcome_of(safe_files.read_text(folder, "run_summary.md"))[0]
    except UnsafeArtifactError:
        return "unknown"


def latest_run_cells(dag_folder: Path) -> dict[str, Any]:
    """Last run, its outcome, snapshot, DQ verdict, rows scored, and the earlier runs' ids."""
    runs = []
    for folder in run_folders(dag_folder):
        try:
            plan = safe_files.read_json(folder, "plan.json")
        except UnsafeArtifactError:
            continue
        if isinstance(plan, dict) and "run_id" in plan:
            runs.append((folder, plan))
    if not runs:
        return {}
    latest, plan = runs[-1]
    cells: dict[str, Any] = {"run_id": str(plan["run_id"]), "snapshot_date": plan.get("snapshot_date", "-"),
                             "earlier_runs": [str(p["run_id"]) for _, p in runs[-EARLIER_RUNS - 1:-1][::-1]],
                             "earlier_snapshots": [str(p.get("snapshot_date", "?")) for _, p in runs[-EARLIER_RUNS - 1:-1][::-1]],
                             "earlier_outcomes": [_outcome_or_unknown(f) for f, _ in runs[-EARLIER_RUNS - 1:-1][::-1]]}
    try:
        outcome = outcome_of(safe_files.read_text(latest, "run_summary.md"))[0]
        cells["outcome"] = "running" if outcome == "RUNNING" else outcome
        dq = safe_files.read_json(latest, "dq_report.json")
        cells["dq"] = ("PASSED" if dq.get("passed") is True else "FAILED") if isinstance(dq, dict) else "-"
        scored = [e for e in parse_events(safe_files.read_tail_lines(latest, "logs.jsonl") or [])
                  if e.get("event") == "score_finished"]
        cells["rows_scored"] = scored[-1].get("rows", "-") if scored else "-"
    except UnsafeArtifactError as exc:
        cells["outcome"] = f"artifact refused: {exc}"
    return cells


def overview_rows(settings: Settings, provider_id: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per provider x pipeline (of one provider, when given) from the configs, the run folders, the
    registry and the scheduler. Each row is built on its own: a provider whose warehouse or artifacts are
    damaged shows why in its cells, and the other rows are unaffected."""
    from batchops.config import cached_config_set

    config_set = cached_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    pairs = [(p, q) for p, q in config_set.dag_pairs() if provider_id is None or p.provider_id == provider_id]
    scheduled = next_runs([f"{p.provider_id}__{q.pipeline_id}" for p, q in pairs])
    rows = []
    for provider, pipeline in pairs:
        dag_id = f"{provider.provider_id}__{pipeline.pipeline_id}"
        row: dict[str, Any] = {"dag_id": dag_id, "next_run": scheduled.get(dag_id, "-"), "queue": provider.queue,
                               "approved_model": approved_model_text(settings, provider.provider_id,
                                                                     pipeline.model_pipeline, provider.queue)}
        try:
            row.update(latest_run_cells(settings.runs_dir / dag_id))
        except Exception as exc:  # noqa: BLE001 - one provider's trouble must not break the page
            row["outcome"] = f"run folders unreadable ({type(exc).__name__}: {exc})"
        rows.append(row)
    return rows, [str(issue) for issue in config_set.issues]


def champion_history(settings: Settings, model_id: str | None, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """The registry decisions of the model's pipeline (model ids are provider__pipeline__date__hash), made by
    `as_of` when given (a run's card: the registry as the run left it, not as it is now)."""
    from batchops.models import model_history

    parts = (model_id or "").split("__")
    if len(parts) < 4:
        return []
    quick = dataclasses.replace(settings, warehouse_lock_timeout_seconds=1.0)
    try:
        history = model_history(quick, parts[0], parts[1], as_of=as_of)
    except Exception:  # noqa: BLE001 - the card shows without its history when the registry is busy or damaged
        return []
    return [{**row, "roc_auc": number(row["roc_auc"])} for row in history]


def latest_with(dag_folders: list[Path], name: str) -> tuple[Path, Any] | None:
    """(run folder, parsed JSON) of the newest run among these DAGs' folders that has the artifact."""
    found = []
    for dag_folder in dag_folders:
        for folder in run_folders(dag_folder):
            found.append(folder)
    for folder in sorted(found, key=lambda f: f.stat(follow_symlinks=False).st_mtime, reverse=True):
        try:
            value = safe_files.read_json(folder, name)
        except UnsafeArtifactError:
            continue
        if isinstance(value, dict):
            return folder, value
    return None


def _servable(folder: Path, name: str) -> bool:
    try:
        with safe_files.open_artifact(folder, name, safe_files.DOWNLOAD_LIMIT):
            return True
    except (FileNotFoundError, UnsafeArtifactError):
        return False


def model_cards(settings: Settings, provider_id: str | None = None) -> list[dict[str, Any]]:
    """A card per provider x model pipeline: the latest trained model's card, the latest scoring run's drift
    verdict among the provider's DAGs, and the champion history. Each card is built on its own."""
    from batchops.config import cached_config_set
    from batchops.ui.pages import drift_card, model_card

    config_set = cached_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    pairs = [(p, q) for p, q in config_set.dag_pairs() if provider_id is None or p.provider_id == provider_id]
    cards = []
    for provider, pipeline in pairs:
        if "train" not in pipeline.stages:
            continue
        dag_id = f"{provider.provider_id}__{pipeline.pipeline_id}"
        card: dict[str, Any] = {"dag_id": dag_id, "refused": None, "model": None, "drift": None, "drift_run": None,
                                "champions": []}
        try:
            trained = latest_with([settings.runs_dir / dag_id], "metrics.json")
            card["model"] = model_card(trained[1]) if trained else None
            if trained and _servable(trained[0], "reliability.png"):
                plan = safe_files.read_json(trained[0], "plan.json") or {}
                if plan.get("run_id"):
                    card["model"]["reliability_url"] = file_url(dag_id, str(plan["run_id"]), "reliability.png")
            provider_dags = [settings.runs_dir / f"{p.provider_id}__{q.pipeline_id}" for p, q in pairs
                             if p.provider_id == provider.provider_id]
            scored = latest_with(provider_dags, "drift_report.json")
            if scored:
                card["drift"], card["drift_run"] = drift_card(scored[1]), f"{scored[0].parent.name} {scored[0].name}"
            card["champions"] = champion_history(settings, (card["model"] or {}).get("model_id"))
        except Exception as exc:  # noqa: BLE001 - one provider's trouble must not break the page
            card["refused"] = f"model card unavailable ({type(exc).__name__}: {exc})"
        cards.append(card)
    return cards


def model_history(settings: Settings, provider_id: str) -> dict[str, Any]:
    """Every indexed training run (figures, decision) and scoring run (drift, score distribution) of the
    provider, oldest first, from the run index (it outlives the run folders)."""
    from batchops import runindex
    from batchops.config import cached_config_set
    from batchops.ui.pages import run_url

    config_set = cached_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    provider = config_set.providers.get(provider_id)
    training, scoring = [], []
    for pipeline in sorted(provider.pipelines if provider else []):
        dag_id = f"{provider_id}__{pipeline}"
        runindex.ensure_index(settings.runs_dir, dag_id)
        for day, entry in sorted(runindex.all_entries(settings.runs_dir, dag_id).items()):
            facts = entry.get("facts") or {}
            link = {"date": day.isoformat(), "pipeline": pipeline, "run_id": entry.get("run_id"),
                    "url": run_url(dag_id, str(entry.get("run_id"))), "outcome": entry.get("outcome")}
            if facts.get("training"):
                training.append({**link, **facts["training"]})
            if facts.get("scoring"):
                scoring.append({**link, **facts["scoring"]})
    return {"training": training, "scoring": scoring}


def airflow_run_states(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Airflow's current state of these (dag_id, run_id) runs, from the metadata DB (api-server process only):
    a cleared run is running again although its old summary says FAILED."""
    if not pairs:
        return {}
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select, tuple_

        with create_session() as session:
            found = session.execute(select(DagRun.dag_id, DagRun.run_id, DagRun.state)
                                    .where(tuple_(DagRun.dag_id, DagRun.run_id).in_(pairs))).all()
    except Exception:  # noqa: BLE001 - the page stays useful without the metadata DB
        return {}
    return {(dag_id, run_id): str(getattr(state, "value", state)) for dag_id, run_id, state in found}


_INDEX_CACHE: dict[Path, tuple[tuple[int, int, int], dict[str, Any] | None]] = {}


def index_reader(settings: Settings):
    """read_window's reader through safe_files (no links below runs/), indexing old DAG folders once. A month file
    read before is reused while its inode, size and change time are the same (a page over a thousand providers
    then stats its files instead of reading them; a file replaced by anything else is read, and refused, anew)."""
    from batchops import runindex

    def read(parts: tuple[str, str], name: str) -> dict[str, Any] | None:
        path = settings.runs_dir.joinpath(*parts, name)
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            if not (settings.runs_dir / parts[0] / runindex.INDEX_FOLDER).exists():
                try:
                    runindex.ensure_index(settings.runs_dir, parts[0])
                except OSError:
                    return None
            info = None
        signature = (info.st_ino, info.st_size, info.st_mtime_ns) if info else None
        cached = _INDEX_CACHE.get(path)
        if signature and cached and cached[0] == signature:
            return cached[1]
        try:
            value = safe_files.read_json(safe_files.rooted(settings.runs_dir, *parts), name)
        except (UnsafeArtifactError, FileNotFoundError, NotADirectoryError):
            return None
        value = value if isinstance(value, dict) else None
        if signature:
            _INDEX_CACHE[path] = (signature, value)
        return value

    return lambda dag_id, start, end: runindex.read_window(settings.runs_dir, dag_id, start, end, read)


def calendar_page(settings: Settings, params: dict[str, str], today: date | None = None,
                  readable: Callable[[set[str]], set[str]] | None = None) -> dict[str, Any]:
    """Everything the calendar section shows for these URL parameters: the page's providers and their cells,
    paging, filters and notes; only the DAGs `readable` keeps (the user's, by the auth manager) are shown."""
    from batchops.config import cached_config_set
    from batchops.ui import calendar

    query, notes = calendar.parse_query(params, today)
    config_set = cached_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    providers = [(p.provider_id, p.queue, sorted(p.pipelines)) for p in config_set.providers.values()]
    if readable is not None:
        allowed = readable({f"{pid}__{pipeline}" for pid, _, pipelines in providers for pipeline in pipelines})
        providers = [(pid, queue, [q for q in pipelines if f"{pid}__{q}" in allowed])
                     for pid, queue, pipelines in providers]
        providers = [row for row in providers if row[2]]
    rows = calendar.select_providers(providers, query)
    reader = index_reader(settings)
    if query.outcome:  # the whole selection's windows are needed to know which providers had such a day
        calendar.fill(rows, query, reader)
        dates = query.dates
        rows = [row for row in rows if query.outcome in row.outcomes(dates)]
        shown, pages = calendar.page_of(rows, query)
    else:  # only the page's providers are read
        shown, pages = calendar.page_of(rows, query)
        calendar.fill(shown, query, reader)
    pairs = sorted({(f"{row.provider_id}__{pipeline}", str(entry.get("run_id")))
                    for row in shown for marks in row.days.values() for pipeline, entry in marks})
    states = airflow_run_states(pairs)
    from batchops.ui.pages import run_url

    return {"query": query, "notes": notes, "total": len(rows), "pages": pages,
            "page": min(query.page, pages), "dates": query.dates,
            "queues": sorted({p.queue for p in config_set.providers.values()}),
            "outcomes": calendar.OUTCOME_FILTERS,
            "rows": [{"provider_id": row.provider_id, "queue": row.queue, "pipelines": row.pipelines,
                      "cells": calendar.cells(row, query, states, run_url)} for row in shown],
            "page_urls": {name: "?" + urlencode(query.params(page=number)) for name, number in (
                ("first", 1), ("previous", max(1, query.page - 1)), ("next", min(pages, query.page + 1)),
                ("last", pages))},
            "config_errors": [str(issue) for issue in config_set.issues]}


def _warm_config_cache() -> None:
    """Validate the configs once when the api-server loads the plugin, not on the first page view (a thousand
    provider files take seconds)."""
    from batchops.config import cached_config_set

    try:
        settings = _settings()
        cached_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    except Exception:  # noqa: BLE001 - a broken config shows on the page, which loads it again
        pass


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    app = FastAPI(title="BatchOps", description="BatchOps run artifacts and provider health")
    threading.Thread(target=_warm_config_cache, name="batchops-config-warmup", daemon=True).start()
    read_dag = Depends(requires_access_dag(method="GET"))

    def readable_by(user) -> Callable[[set[str]], set[str]]:
        """The DAG ids of a set this user may read (a provider's role sees its own provider's DAGs only)."""
        from airflow.api_fastapi.app import get_auth_manager

        return lambda dag_ids: get_auth_manager().filter_authorized_dag_ids(dag_ids=dag_ids, user=user, method="GET")

    @app.get("/", response_class=HTMLResponse, dependencies=[read_dag])
    def overview(request: Request, user=Depends(get_user)) -> HTMLResponse:  # noqa: B008 - FastAPI's idiom
        started = time.perf_counter()
        settings = _settings()
        page = calendar_page(settings, dict(request.query_params), readable=readable_by(user))
        elapsed = time.perf_counter() - started
        html = render_calendar(page, elapsed)
        return HTMLResponse(html, headers={**PAGE_HEADERS, "Server-Timing": f"app;dur={elapsed * 1000:.1f}"})

    @app.get("/providers/{provider_id}", response_class=HTMLResponse, dependencies=[read_dag])
    def provider_page(provider_id: str, user=Depends(get_user)) -> HTMLResponse:  # noqa: B008 - FastAPI's idiom
        settings = _settings()
        rows, errors = overview_rows(settings, provider_id)
        if not rows:
            raise HTTPException(status_code=404, detail=f"no provider {provider_id!r} in the configs")
        if not readable_by(user)({row["dag_id"] for row in rows}):
            raise HTTPException(status_code=403, detail=f"no access to provider {provider_id!r}'s DAGs")
        return HTMLResponse(render_overview(rows, errors, model_cards(settings, provider_id),
                                            model_history(settings, provider_id), provider_id), headers=PAGE_HEADERS)

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[read_dag])
    def run_page(dag_id: str, run_id: str, level: Literal["all", "warning", "error"] = "all") -> HTMLResponse:
        if "__" not in dag_id:
            return HTMLResponse(render_not_batchops(dag_id), headers=PAGE_HEADERS)
        folder = _run_folder(dag_id, run_id)
        if not folder.is_dir() or folder.is_symlink():
            raise HTTPException(status_code=404, detail=f"no BatchOps run {run_id!r} of {dag_id!r}")
        try:
            with safe_files.open_artifact(folder, "plan.json"):
                pass
        except (FileNotFoundError, UnsafeArtifactError) as exc:
            raise HTTPException(status_code=404, detail=f"no BatchOps run {run_id!r} of {dag_id!r}") from exc
        settings = _settings()
        try:  # the run's end: its card shows the registry's decisions up to then
            as_of = datetime.fromtimestamp(os.stat(folder / "run_summary.md", follow_symlinks=False).st_mtime, UTC)
        except OSError:
            as_of = None  # still running: everything decided so far
        page = render_run_page(dag_id, run_id, folder, lambda model_id: champion_history(settings, model_id, as_of),
                               level, airflow_run_states([(dag_id, run_id)]).get((dag_id, run_id)))
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/files/{dag_id}/{run_id}/{name:path}", dependencies=[read_dag])
    def run_file(dag_id: str, run_id: str, name: str) -> StreamingResponse:
        if name not in DOWNLOADABLE:
            raise HTTPException(status_code=404, detail=f"{name!r} is not a BatchOps artifact")
        folder = _run_folder(dag_id, run_id)
        try:
            blocks = safe_files.stream(folder, name)
        except FileNotFoundError as exc:
            raise HTTPException(status_code=404, detail=f"{name} not found for this run") from exc
        except (UnsafeArtifactError, NotADirectoryError) as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".jsonl"):
            media_type = "application/x-ndjson"
        return StreamingResponse(blocks, media_type=media_type,
                                 headers={**PAGE_HEADERS,
                                          "Content-Disposition": f'inline; filename="{Path(name).name}"'})

    return app
