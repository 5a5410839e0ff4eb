"""Recovering a provider's warehouse: backups, restore, and a rebuild from the landing drops.

The landing drops are the source of truth and the warehouse is derived from them, so a damaged file
is never the end: `rebuild` loads every drop again into a new file (data tables, then features and
labels for the pipelines that built them, the models from the store's registry.json files and the
predictions from the run folders) and swaps it in under the provider lock. `backup` copies a
checkpointed file under the lock; `restore` swaps a verified backup in. A replaced file is kept
beside the warehouse (`<provider>.duckdb.replaced-<time>`), never deleted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from batchops.artifacts import atomic_path, sha256_of_file, write_with
from batchops.config import ConfigSet, PipelineSpec, ProviderConfig
from batchops.errors import BatchOpsError
from batchops.models import REGISTRY_SIDECAR, ensure_registry, register_model
from batchops.recovery import owner_tag
from batchops.runcontext import RunContext
from batchops.runlog import read_events
from batchops.settings import Settings
from batchops.sqlfiles import run_sql_file
from batchops.warehouse import open_warehouse, transaction, warehouse_lock, warehouse_path

BACKUP_NAME = re.compile(r"^(?P<provider>[a-z][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}\d*Z)\.duckdb$")


class MaintenanceError(BatchOpsError):
    """A backup, restore or rebuild could not be done; nothing was replaced."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def verify_database(path: Path) -> list[str]:
    """The tables of a DuckDB file opened read-only; refuses a file that is not a readable database."""
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            tables = [row[0] for row in connection.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
            for table in tables:  # read every table once: a damaged block fails here, not after the swap
                connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable
        raise MaintenanceError(f"{path} is not a readable DuckDB database ({str(exc).splitlines()[0]})") from exc
    return tables


def _set_aside(target: Path, stamp: str) -> Path | None:
    """Move the warehouse and its WAL out of the way (kept, never deleted) before a new file takes the
    name, so the old WAL is never replayed onto the new file. Caller holds the provider lock."""
    wal = target.with_name(target.name + ".wal")
    if wal.exists():
        os.replace(wal, target.with_name(f"{target.name}.replaced-{stamp}.wal"))
    if not target.exists():
        return None
    kept = target.with_name(f"{target.name}.replaced-{stamp}")
    os.replace(target, kept)
    return kept


# ---------------------------------------------------------------- backup and restore
def list_backups(settings: Settings, provider_id: str) -> list[Path]:
    """The provider's backups, oldest first."""
    folder = settings.backup_dir(provider_id)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (m := BACKUP_NAME.match(p.name)) and m["provider"] == provider_id)


def backup(settings: Settings, provider_id: str, keep: int | None = None) -> dict[str, Any]:
    """Copy the provider's warehouse, checkpointed and under its lock, to backups/<provider>/; keep the
    newest `keep` backups (BATCHOPS_BACKUP_RETENTION) and delete older ones."""
    source = warehouse_path(settings, provider_id)
    if not source.exists():
        raise MaintenanceError(f"{source} does not exist: provider {provider_id} has no warehouse to back up")
    target = settings.backup_dir(provider_id) / f"{provider_id}-{_stamp()}.duckdb"
    with open_warehouse(settings, provider_id) as warehouse:
        warehouse.execute("CHECKPOINT")  # the file alone now holds every committed change
        write_with(target, lambda temp: shutil.copyfile(source, temp))
    tables = verify_database(target)
    keep = settings.backup_retention if keep is None else keep
    removed = []
    for old in list_backups(settings, provider_id)[:-keep]:
        old.unlink()
        removed.append(old.name)
    return {"backup": str(target), "bytes": target.stat().st_size, "tables": tables, "removed": removed}


def restore(settings: Settings, provider_id: str, backup_file: Path | None = None) -> dict[str, Any]:
    """Swap a verified backup (default: the newest) in as the provider's warehouse, under its lock."""
    if backup_file is None:
        found = list_backups(settings, provider_id)
        if not found:
            raise MaintenanceError(f"no backup of {provider_id} in {settings.backup_dir(provider_id)}; "
                                   f"rebuild it from the landing drops: python -m batchops rebuild --provider "
                                   f"{provider_id}")
        backup_file = found[-1]
    tables = verify_database(backup_file)
    target = warehouse_path(settings, provider_id)
    stamp = _stamp()
    with warehouse_lock(settings, provider_id), atomic_path(target) as copy:
        shutil.copyfile(backup_file, copy)
        kept = _set_aside(target, stamp)  # atomic_path then renames the copy into place
    return {"restored_from": str(backup_file), "warehouse": str(target), "tables": tables,
            "previous_file": str(kept) if kept else None}


# ---------------------------------------------------------------- rebuild from the landing drops
def landing_snapshots(provider: ProviderConfig, data_dir: Path) -> list[date]:
    """Every snapshot date that has a landing folder, read back through the provider's landing_path."""
    template = provider.landing_path.replace("{provider_id}", provider.provider_id)
    pattern = re.compile("^" + re.escape(template).replace(re.escape("{snapshot_date}"),
                                                           r"(?P<snapshot>\d{4}-\d{2}-\d{2})") + "$")
    found = set()
    for folder in data_dir.glob(template.replace("{snapshot_date}", "[0-9]" * 4 + "-[0-9][0-9]-[0-9][0-9]")):
        match = pattern.match(folder.relative_to(data_dir).as_posix())
        if match and folder.is_dir():
            try:
                found.add(date.fromisoformat(match["snapshot"]))
            except ValueError:
                continue
    return sorted(found)


@dataclasses.dataclass
class SnapshotHistory:
    """What earlier runs did with one drop, read from their run folders."""

    feature_pipelines: list[str] = dataclasses.field(default_factory=list)  # in the order they ran
    predictions: tuple[str, Path] | None = None  # (run id, predictions.parquet) of the last scoring


def run_history(settings: Settings, provider: ProviderConfig) -> dict[date, SnapshotHistory]:
    """Per snapshot: which pipelines built features, and the latest run's predictions."""
    finished: list[tuple[str, str, date, str, Path]] = []  # (time, kind, snapshot, pipeline or run id, path)
    for pipeline_id in provider.pipelines:
        dag_folder = settings.runs_dir / f"{provider.provider_id}__{pipeline_id}"
        if not dag_folder.is_dir():
            continue
        for run_folder in dag_folder.iterdir():
            plan_file = run_folder / "plan.json"
            if run_folder.is_symlink() or not plan_file.is_file():
                continue
            plan = json.loads(plan_file.read_text(encoding="utf-8"))
            snapshot = date.fromisoformat(plan["snapshot_date"])
            for event in read_events(run_folder / "logs.jsonl"):
                # a DAG task logs stage_finished; a stage called directly (tests, tools) logs <stage>_finished
                if event.get("event") not in ("stage_finished", f"{event.get('stage')}_finished"):
                    continue
                if event.get("stage") == "build_features":
                    finished.append((event["ts"], "features", snapshot, pipeline_id, run_folder))
                elif event.get("stage") == "score" and (run_folder / "predictions" / "predictions.parquet").is_file():
                    finished.append((event["ts"], "predictions", snapshot, plan["run_id"], run_folder))
    history: dict[date, SnapshotHistory] = {}
    for _, kind, snapshot, name, run_folder in sorted(finished, key=lambda item: item[0]):
        entry = history.setdefault(snapshot, SnapshotHistory())
        if kind == "features":
            entry.feature_pipelines.append(name)
        else:
            entry.predictions = (name, run_folder / "predictions" / "predictions.parquet")
    return history


def _rebuild_snapshot(ctx: RunContext, history: SnapshotHistory | None, pipelines: dict[str, PipelineSpec],
                      note: Callable[[str], None]) -> dict[str, Any]:
    from batchops.stages.features import build_features
    from batchops.stages.ingest import ingest
    from batchops.stages.load import load
    from batchops.stages.validate import dq_verdict, validate

    ingest(ctx)
    validate(ctx)
    passed, reason = dq_verdict(ctx)
    if not passed:  # the DAG's gate refused this drop too: it was never loaded
        note(f"{ctx.snapshot_date}: not loaded, data quality fails as it did for its runs ({reason[:200]})")
        return {"snapshot_date": ctx.snapshot_date.isoformat(), "loaded": False, "reason": reason}
    rows = load(ctx)["rows"]
    shutil.rmtree(ctx.staging_dir, ignore_errors=True)
    result: dict[str, Any] = {"snapshot_date": ctx.snapshot_date.isoformat(), "loaded": True, "rows": rows,
                              "features_from": [], "predictions_from": None}
    for pipeline_id in (history.feature_pipelines if history else []):
        if pipeline_id in pipelines:
            build_features(dataclasses.replace(ctx, pipeline=pipelines[pipeline_id]))
            result["features_from"].append(pipeline_id)
    if history and history.predictions:
        run_id, parquet = history.predictions
        with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse, transaction(warehouse):
            run_sql_file(warehouse, ctx.settings.sql_dir, "predictions.sql", {
                "snapshot_date": ctx.snapshot_date.isoformat(), "run_id": run_id, "predictions_path": str(parquet)})
        result["predictions_from"] = run_id
    note(f"{ctx.snapshot_date}: loaded {rows}; features by {result['features_from'] or 'no run'}; "
         f"predictions from {result['predictions_from'] or 'no run'}")
    return result


def _register_stored_models(settings: Settings, build: Settings, provider_id: str,
                            note: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Re-register every model of the store from its registry.json, if its bytes are still the ones trained."""
    registered, skipped = [], []
    store = settings.model_store(provider_id)
    entries = []
    for sidecar in sorted(store.glob(f"*/{REGISTRY_SIDECAR}")) if store.is_dir() else []:
        entry = json.loads(sidecar.read_text(encoding="utf-8"))
        model_file = sidecar.parent / "model.pkl"
        if not model_file.is_file() or sha256_of_file(model_file) != entry["sha256"]:
            skipped.append(f"{sidecar.parent.name}: model.pkl missing or changed since training")
            continue
        entries.append(entry)
    for directory in sorted(store.iterdir()) if store.is_dir() else []:
        if directory.is_dir() and not directory.name.startswith(".") and not (directory / REGISTRY_SIDECAR).exists():
            skipped.append(f"{directory.name}: no {REGISTRY_SIDECAR} (trained before sidecars); retrain to register")
    with open_warehouse(build, provider_id) as warehouse, transaction(warehouse):
        ensure_registry(warehouse, build)
        for entry in sorted(entries, key=lambda e: e["registered_at"]):
            register_model(warehouse, build, entry)
            registered.append(entry["model_id"])
    for reason in skipped:
        note(f"model not re-registered: {reason}")
    return registered, skipped


def rebuild(settings: Settings, config_set: ConfigSet, provider_id: str, since: date | None = None,
            note: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the provider's warehouse anew from its landing drops and swap it in under the provider lock.

    The lock is held from start to end, so runs of this provider wait instead of writing to a file that
    is about to be replaced. Drops before `since` are left out of the new file."""
    if provider_id not in config_set.providers:
        raise MaintenanceError(f"no valid provider config {provider_id!r}; known: {sorted(config_set.providers)}")
    provider = config_set.providers[provider_id]
    pipelines = {p: config_set.pipeline_for(provider_id, p) for p in provider.pipelines if p in config_set.pipelines}
    loading = next((pipelines[p] for p in provider.pipelines if "load" in pipelines[p].stages), None)
    if loading is None:
        raise MaintenanceError(f"{provider_id} has no pipeline with a load stage; nothing builds its warehouse")
    snapshots = [s for s in landing_snapshots(provider, settings.data_dir) if since is None or s >= since]
    if not snapshots:
        raise MaintenanceError(f"no landing drops of {provider_id} under {settings.data_dir} "
                               f"(landing_path {provider.landing_path!r}){f' from {since}' if since else ''}")
    history = run_history(settings, provider)
    target = warehouse_path(settings, provider_id)
    stamp = _stamp()
    with warehouse_lock(settings, provider_id):
        scratch = Path(tempfile.mkdtemp(prefix=f".rebuild-{provider_id}.{owner_tag()}.", dir=settings.warehouse_dir))
        try:
            build = dataclasses.replace(settings, warehouse_dir=scratch)
            results = [_rebuild_snapshot(
                RunContext(f"{provider_id}__rebuild", f"rebuild__{stamp}__{snapshot}", provider, loading, snapshot,
                           build), history.get(snapshot), pipelines, note) for snapshot in snapshots]
            registered, skipped = _register_stored_models(settings, build, provider_id, note)
            built = warehouse_path(build, provider_id)
            tables = verify_database(built)
            kept = _set_aside(target, stamp)
            os.replace(built, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"warehouse": str(target), "snapshots": results, "models_registered": registered,
            "models_skipped": skipped, "tables": tables, "previous_file": str(kept) if kept else None,
            "left_out_before": since.isoformat() if since else None}

