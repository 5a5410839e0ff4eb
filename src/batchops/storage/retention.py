"""Retention: what grows with every run (rows, run folders, models, Airflow's records, and landing drops when
landing_days is set) kept for a window.

`plan_prune` decides, for one provider and a day, what goes and why, and what is kept although old and why
(the current champion and the run that trained it, runs that may still be resumed, run folders a rebuild
needs for the rows still kept). `apply_prune` removes exactly that plan: rows in one warehouse transaction,
folders by a rename to a hidden name then a delete (a kill leaves only a leftover that recovery removes).
Windows count days back from `today` by snapshot date: the date the data is about.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from batchops.artifacts import write_json_atomic
from batchops.config import ConfigSet, ProviderConfig
from batchops.models import ensure_registry
from batchops.owner import owner_tag
from batchops.recovery import remove_dead_temp_files
from batchops.settings import Settings
from batchops.storage.backup import MaintenanceError, backup, list_backups, verify_backup
from batchops.storage.compact import compact, free_bytes
from batchops.storage.rebuild import landing_snapshots, run_history
from batchops.storage.warehouse import open_warehouse, transaction, warehouse_path

SUMMARY_HEADLINE = "# Run summary: "
# Rewritten whole after prune removes rows from them: DuckDB frees a row group's blocks only once every row in it
# is deleted, and a day's rows share row groups with the days kept, so their space would stay in use (not free,
# so not compacted) until later days are removed too: a training day's rows held 4 MiB for a day at 20,000
# customers. These tables hold a window of days, so the rewrite is small.
DERIVED_TABLES = ("features", "labels", "predictions")
# task_reschedule is left out: Airflow 3.3's db clean filters it by a dag_id column it does not have (an error
# per run); its rows go with their task instance (ON DELETE CASCADE).
METADATA_TABLES = "dag_run,task_instance,task_instance_history,xcom,log"


@dataclasses.dataclass(frozen=True)
class Removal:
    """One thing prune removes (or, kept=True, keeps although its window has passed), and why."""

    kind: str  # run folder | model | rows | airflow records
    target: str
    reason: str
    kept: bool = False
    bytes: int = 0

    def line(self) -> str:
        size = f" ({self.bytes / (1 << 20):,.1f} MiB)" if self.bytes else ""
        return f"{'keep  ' if self.kept else 'remove'} {self.kind}: {self.target}{size}: {self.reason}"


def watermark_path(settings: Settings, provider_id: str) -> Path:
    """Beside the warehouse: the dates before which prune removed rows, so a rebuild does not bring them back."""
    return settings.warehouse_dir / f"{provider_id}.retention.json"


def read_watermarks(settings: Settings, provider_id: str) -> dict[str, date]:
    try:
        found = json.loads(watermark_path(settings, provider_id).read_text(encoding="utf-8"))
        return {key: date.fromisoformat(value) for key, value in found.items()}
    except (FileNotFoundError, ValueError, TypeError, AttributeError):
        return {}


@dataclasses.dataclass
class PrunePlan:
    provider_id: str
    today: date
    removals: list[Removal] = dataclasses.field(default_factory=list)
    # what apply_prune executes: warehouse statements and their parameters, folders, metadata cut-off
    statements: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    folders: list[Path] = dataclasses.field(default_factory=list)
    pruned_models: list[str] = dataclasses.field(default_factory=list)
    metadata_before: datetime | None = None
    dag_ids: list[str] = dataclasses.field(default_factory=list)
    watermarks: dict[str, date] = dataclasses.field(default_factory=dict)
    compact_free_share: float | None = None  # rewrite the warehouse file when this share of it is free
    # derived tables rows are removed from, rewritten after the removal (see DERIVED_TABLES)
    rewritten_tables: list[str] = dataclasses.field(default_factory=list)

    def remove(self, kind: str, target: str, reason: str, size: int = 0) -> None:
        self.removals.append(Removal(kind, target, reason, False, size))

    def keep(self, kind: str, target: str, reason: str) -> None:
        self.removals.append(Removal(kind, target, reason, True))


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _outcome(run_folder: Path) -> str | None:
    """COMPLETE, FAILED, BLOCKED, NO DROP from run_summary.md's first line; None when there is none yet."""
    try:
        first = (run_folder / "run_summary.md").read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    except (FileNotFoundError, IsADirectoryError):
        return None
    return first.removeprefix(SUMMARY_HEADLINE).strip() or None


def _plan_of(run_folder: Path) -> dict[str, Any] | None:
    try:
        plan = json.loads((run_folder / "plan.json").read_text(encoding="utf-8"))
        date.fromisoformat(plan["snapshot_date"])
        return plan
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _registry(settings: Settings, provider_id: str) -> list[dict[str, Any]]:
    if not warehouse_path(settings, provider_id).exists():
        return []
    with open_warehouse(settings, provider_id) as warehouse:
        ensure_registry(warehouse, settings)
        rows = warehouse.execute("SELECT model_id, pipeline, training_snapshot, status, trained_in_run, registered_at "
                                 "FROM model_registry ORDER BY pipeline, registered_at").fetchall()
    return [dict(zip(("model_id", "pipeline", "training_snapshot", "status", "trained_in_run", "registered_at"), row,
                     strict=True)) for row in rows]


def _models(plan: PrunePlan, settings: Settings, provider: ProviderConfig, registry: list[dict[str, Any]]) -> set[str]:
    """Plan the model store; returns the run ids of the models kept as champions (their runs are kept too)."""
    policy = provider.retention
    champion_runs: set[str] = set()
    keep: dict[str, str] = {}
    for pipeline in sorted({entry["pipeline"] for entry in registry}):
        entries = [e for e in registry if e["pipeline"] == pipeline]
        approved = [e for e in entries if e["status"] == "approved"]
        current = max(approved, key=lambda e: (e["training_snapshot"], e["registered_at"]), default=None)
        if current:
            keep[current["model_id"]] = "the current champion"
            champion_runs.add(current["trained_in_run"])
        for entry in sorted(approved, key=lambda e: e["registered_at"], reverse=True)[:policy.champions_kept]:
            keep.setdefault(entry["model_id"], f"one of the last {policy.champions_kept} champions (to roll back)")
        for entry in sorted(entries, key=lambda e: e["registered_at"], reverse=True)[:policy.models_kept]:
            keep.setdefault(entry["model_id"], f"one of the {policy.models_kept} newest models of {pipeline}")
    registered = {entry["model_id"] for entry in registry}
    store = settings.model_store(provider.provider_id)
    for directory in sorted(store.iterdir()) if store.is_dir() else []:
        if not directory.is_dir() or directory.is_symlink() or directory.name.startswith("."):
            continue
        if directory.name in keep:
            continue
        if directory.name in registered:
            plan.remove("model", directory.name, f"older than the {policy.models_kept} newest models and not one of "
                        f"the last {policy.champions_kept} champions", folder_bytes(directory))
            plan.pruned_models.append(directory.name)
        else:
            plan.remove("model", directory.name, "not in the registry (a training attempt that never registered)",
                        folder_bytes(directory))
        plan.folders.append(directory)
    for model_id, why in keep.items():
        if (store / model_id).is_dir():
            plan.keep("model", model_id, why)
    return champion_runs


def served_training_snapshots(registry: list[dict[str, Any]], training_pipelines: list[str]) -> list[date]:
    """The drops every training pipeline of the provider registered a model from: their training rows served."""
    if not training_pipelines:
        return []
    registered = [{entry["training_snapshot"] for entry in registry if entry["pipeline"] == pipeline}
                  for pipeline in training_pipelines]
    return sorted(set.intersection(*registered))


def training_pipelines(config_set: ConfigSet, provider_id: str) -> list[str]:
    return [pipeline for pipeline in config_set.providers[provider_id].pipelines
            if "train" in config_set.pipeline_for(provider_id, pipeline).stages]


def training_row_statements(served: list[date]) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, DELETE, parameters) removing the training rows of the served drops (labels exist only for them)."""
    parameters = {"served": [d.isoformat() for d in served]}
    return [(table, f"DELETE FROM {table} WHERE {condition}list_contains(CAST($served AS DATE[]), source_snapshot)",
             parameters) for table, condition in (("features", "purpose = 'train' AND "), ("labels", ""))]


def _rows(plan: PrunePlan, settings: Settings, provider: ProviderConfig, registry: list[dict[str, Any]],
          trainers: list[str]) -> None:
    policy = provider.retention
    features_before = plan.today - timedelta(days=policy.feature_days)
    predictions_before = plan.today - timedelta(days=policy.prediction_days)
    plan.watermarks = {"features": features_before, "predictions": predictions_before}
    if not warehouse_path(settings, provider.provider_id).exists():
        return
    served = [] if policy.keep_training_rows else [
        snapshot for snapshot in served_training_snapshots(registry, trainers)
        if snapshot >= features_before]  # older ones go with the feature_days window
    with open_warehouse(settings, provider.provider_id) as warehouse:
        tables = {row[0] for row in warehouse.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        size, free = free_bytes(warehouse.duckdb)
        counted = []
        for table, column, before, window in (("features", "source_snapshot", features_before, "feature_days"),
                                              ("labels", "source_snapshot", features_before, "feature_days"),
                                              ("predictions", "snapshot_date", predictions_before, "prediction_days")):
            if table in tables:
                sql = f"DELETE FROM {table} WHERE {column} < CAST($before AS DATE)"
                rows = warehouse.execute(f"SELECT count(*) FROM {table} WHERE {column} < CAST($before AS DATE)",
                                         {"before": before}).fetchone()[0]
                counted.append((table, rows, sql, before, window))
        if served:
            for table, sql, parameters in training_row_statements(served):
                if table in tables:
                    rows = warehouse.execute(sql.replace("DELETE FROM", "SELECT count(*) FROM"), parameters).fetchone()[0]
                    if rows:
                        plan.remove("rows", f"{rows:,} training rows of {table}", "a model of every training pipeline "
                                    f"was registered from their drop ({', '.join(map(str, served))}; "
                                    "keep_training_rows false)")
                        plan.statements.append((sql, parameters))
                        if table not in plan.rewritten_tables:
                            plan.rewritten_tables.append(table)
        if policy.history_days is not None:
            history_before = plan.today - timedelta(days=policy.history_days)
            for entity in provider.entities:
                if entity in tables:
                    sql = f'DELETE FROM "{entity}" WHERE valid_to < CAST($before AS DATE)'
                    rows = warehouse.execute(f'SELECT count(*) FROM "{entity}" WHERE valid_to < CAST($before AS DATE)',
                                             {"before": history_before}).fetchone()[0]
                    counted.append((entity, rows, sql, history_before, "history_days"))
    for table, rows, sql, before, window in counted:
        if rows and table in DERIVED_TABLES and table not in plan.rewritten_tables:
            plan.rewritten_tables.append(table)
        if rows:
            plan.remove("rows", f"{rows:,} rows of {table}", f"{'no longer valid since' if 'valid_to' in sql else 'for drops'}"
                        f" before {before} ({window} {getattr(policy, window)})")
            plan.statements.append((sql, {"before": before.isoformat()}))
    if policy.compact_free_share < 1:
        plan.compact_free_share = policy.compact_free_share
        plan.remove("free space", f"warehouse file {provider.provider_id}.duckdb",
                    f"rewritten without the space deleted rows held when at least {policy.compact_free_share:.0%} of "
                    f"it is free after the removals (now {free / (1 << 20):,.1f} MiB free of {size / (1 << 20):,.1f} "
                    "MiB; compact_free_share)")


LOADS_QUERY = "SELECT snapshot_date, entity, load_id FROM load_audit"
HAS_LOAD_AUDIT = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'load_audit'"


def _loads(connection) -> dict[date, set[tuple[str, str]]]:
    """Per loaded drop: its (entity, load_id) pairs, from the database's load_audit ({} when it has none)."""
    rows = connection.execute(LOADS_QUERY).fetchall() if connection.execute(HAS_LOAD_AUDIT).fetchone()[0] else []
    loads: dict[date, set[tuple[str, str]]] = {}
    for snapshot, entity, load_id in rows:
        loads.setdefault(snapshot, set()).add((entity, load_id))
    return loads


def newest_verified_backup(settings: Settings, provider_id: str) -> tuple[Path | None, list[str]]:
    """The newest backup that verifies against its manifest, and why each newer one did not."""
    skipped = []
    for backup_file in reversed(list_backups(settings, provider_id)):
        try:
            verify_backup(backup_file, provider_id)
            return backup_file, skipped
        except MaintenanceError as exc:
            skipped.append(str(exc))
    return None, skipped


def _landing(plan: PrunePlan, settings: Settings, provider: ProviderConfig, others: list[ProviderConfig]) -> None:
    """Landing drops older than landing_days whose current load the newest verified backup holds; never a folder
    another provider's landing_path also reaches."""
    days = provider.retention.landing_days
    if days is None:
        return
    before = plan.today - timedelta(days=days)
    old = [s for s in landing_snapshots(provider, settings.data_dir) if s < before]
    if not old:
        return
    import duckdb

    loads = {}
    if warehouse_path(settings, provider.provider_id).exists():
        with open_warehouse(settings, provider.provider_id) as warehouse:
            loads = _loads(warehouse)
    backup_file, skipped = newest_verified_backup(settings, provider.provider_id)
    backed_up = {}
    if backup_file:
        with duckdb.connect(str(backup_file), read_only=True) as copy:
            backed_up = _loads(copy)
    kept: dict[str, list[date]] = {}
    for snapshot in old:
        folder = provider.landing_dir(settings.data_dir, snapshot)
        if folder.is_symlink():
            continue  # not a folder BatchOps may remove; left alone
        sharing = [other.provider_id for other in others
                   if (theirs := other.landing_dir(settings.data_dir, snapshot).resolve()).is_relative_to(folder.resolve())
                   or folder.resolve().is_relative_to(theirs)]
        if sharing:
            kept.setdefault(f"the folder is also {', '.join(sharing)}'s landing folder", []).append(snapshot)
        elif snapshot not in loads:
            kept.setdefault("never loaded (a run of it may still load it)", []).append(snapshot)
        elif backup_file is None:
            kept.setdefault("no verified backup of the warehouse" + (f" ({skipped[0]})" if skipped else "") +
                            f": python -m batchops backup --provider {provider.provider_id}", []).append(snapshot)
        elif loads[snapshot] != backed_up.get(snapshot):
            kept.setdefault(f"loaded again after the newest verified backup {backup_file.name}: take a backup",
                            []).append(snapshot)
        else:
            plan.remove("landing drop", str(folder.relative_to(settings.data_dir)),
                        f"older than landing_days {days}, loaded, and held by backup {backup_file.name}",
                        folder_bytes(folder))
            plan.folders.append(folder)
    for why, snapshots in kept.items():
        listed = ", ".join(map(str, snapshots[:5])) + (f" and {len(snapshots) - 5} more" if len(snapshots) > 5 else "")
        plan.keep("landing drop", f"{len(snapshots)} drop(s) older than landing_days {days} ({listed})", why)


def _run_folders(plan: PrunePlan, settings: Settings, provider: ProviderConfig, champion_runs: set[str]) -> None:
    policy = provider.retention
    history = run_history(settings, provider)
    needed: dict[Path, str] = {}
    for snapshot, entry in history.items():
        if entry.predictions and snapshot >= plan.today - timedelta(days=policy.prediction_days):
            needed[entry.predictions[1].parent.parent] = f"holds the kept predictions of {snapshot} (rebuild)"
        if snapshot >= plan.today - timedelta(days=policy.feature_days):
            for pipeline, run_folder in entry.feature_runs.items():
                needed.setdefault(run_folder, f"built the kept {pipeline} features of {snapshot} (rebuild)")
    dag_folders = [settings.runs_dir / f"{provider.provider_id}__{p}" for p in provider.pipelines]
    for dag_folder in (d for d in dag_folders if d.is_dir() and not d.is_symlink()):
        for run_folder in sorted(dag_folder.iterdir()):
            if run_folder.is_symlink() or not run_folder.is_dir() or run_folder.name.startswith("."):
                continue
            plan_json = _plan_of(run_folder)
            outcome = _outcome(run_folder)
            name = f"{dag_folder.name}/{run_folder.name}"
            if plan_json is None:
                if outcome is None:
                    continue  # neither a plan nor a summary: not a run folder BatchOps wrote whole; left alone
                snapshot = date.fromtimestamp(run_folder.stat().st_mtime)
            else:
                snapshot = date.fromisoformat(plan_json["snapshot_date"])
            days = policy.run_days if outcome == "COMPLETE" else policy.failed_run_days
            if snapshot >= plan.today - timedelta(days=days):
                continue
            run_id = str((plan_json or {}).get("run_id", run_folder.name))
            why = ("trained the current champion" if run_id in champion_runs else needed.get(run_folder))
            if why:
                plan.keep("run folder", name, why)
                continue
            state = outcome or "no summary (never finished)"
            plan.remove("run folder", name, f"{state}, snapshot {snapshot}: older than "
                        f"{'run_days' if outcome == 'COMPLETE' else 'failed_run_days'} {days}", folder_bytes(run_folder))
            plan.folders.append(run_folder)


def backup_before_prune(settings: Settings, config_set: ConfigSet, provider_id: str) -> str | None:
    """The backup retention.backup_before_prune asks for, taken before planning (so the plan counts on it); the
    line to print, or None when not asked or there is no warehouse yet."""
    if not config_set.providers[provider_id].retention.backup_before_prune:
        return None
    if not warehouse_path(settings, provider_id).exists():
        return None
    made = backup(settings, provider_id)
    return (f"backed up to {Path(made['backup']).name} ({made['bytes']:,} bytes; backup_before_prune); removed by "
            f"backup retention: {', '.join(made['removed']) or 'none'}")


def plan_prune(settings: Settings, config_set: ConfigSet, provider_id: str, today: date,
               metadata_before: datetime | None = None) -> PrunePlan:
    """What prune removes for one provider on `today`, and what it keeps although old, each with why."""
    provider = config_set.providers[provider_id]
    plan = PrunePlan(provider_id, today)
    registry = _registry(settings, provider_id)  # read once: the models and the training rows both need it
    champion_runs = _models(plan, settings, provider, registry)
    _rows(plan, settings, provider, registry, training_pipelines(config_set, provider_id))
    _run_folders(plan, settings, provider, champion_runs)
    _landing(plan, settings, provider, [p for p in config_set.providers.values() if p.provider_id != provider_id])
    plan.metadata_before = metadata_before or (datetime.now(UTC) - timedelta(days=provider.retention.airflow_metadata_days))
    plan.dag_ids = [f"{provider_id}__{pipeline}" for pipeline in provider.pipelines]
    plan.remove("airflow records", ", ".join(plan.dag_ids),
                f"runs, task instances, XComs and logs from before {plan.metadata_before:%Y-%m-%d %H:%M} UTC "
                f"(airflow_metadata_days {provider.retention.airflow_metadata_days}; Airflow keeps each DAG's latest "
                "scheduled run)")
    return plan


def _remove_folder(folder: Path) -> None:
    """Rename out of sight first (readers and rebuild never meet half a folder), then delete."""
    retired = folder.with_name(f".{folder.name}.{owner_tag()}.{secrets.token_hex(4)}")
    os.replace(folder, retired)
    shutil.rmtree(retired, ignore_errors=True)


def airflow_clean_arguments(dag_ids: list[str], before: datetime, dry_run: bool = False,
                            tables: str = METADATA_TABLES) -> list[str]:
    """The `airflow` command line that removes these DAGs' records from before `before`."""
    return (["db", "clean", "--clean-before-timestamp", before.isoformat(), "--dag-ids", ",".join(dag_ids),
             "--tables", tables, "--skip-archive", "--yes"] + (["--dry-run"] if dry_run else []))


def clean_airflow_records(dag_ids: list[str], before: datetime, dry_run: bool = False) -> subprocess.CompletedProcess:
    """`airflow db clean` of these DAGs' records from before `before` (a process of its own: in Airflow 3 a task
    has no database session, the CLI has)."""
    command = [sys.executable, "-m", "airflow", *airflow_clean_arguments(dag_ids, before, dry_run)]
    return subprocess.run(command, capture_output=True, text=True, timeout=3600)


def apply_prune(settings: Settings, plan: PrunePlan, airflow_records: bool = True) -> dict[str, Any]:
    """Remove what the plan says: rows (one transaction, the registry notes the pruned models), folders, and
    Airflow's records."""
    if plan.watermarks:  # first: a rebuild after a kill here leaves out what is about to go anyway
        marks = read_watermarks(settings, plan.provider_id)
        marks.update({key: max(value, marks.get(key, value)) for key, value in plan.watermarks.items()})
        write_json_atomic(watermark_path(settings, plan.provider_id), {k: v.isoformat() for k, v in marks.items()})
    if plan.statements or plan.pruned_models:
        with open_warehouse(settings, plan.provider_id) as warehouse:
            with transaction(warehouse):
                for sql, parameters in plan.statements:
                    warehouse.execute(sql, parameters)
                for table in plan.rewritten_tables:  # names from DERIVED_TABLES only
                    warehouse.execute(f"CREATE OR REPLACE TABLE {table} AS FROM {table}")
                if plan.pruned_models:
                    warehouse.execute("UPDATE model_registry SET pruned_at = now()::TIMESTAMP "
                                      "WHERE list_contains($models, model_id) AND pruned_at IS NULL",
                                      {"models": plan.pruned_models})
            warehouse.execute("CHECKPOINT")  # the freed blocks are reused, and the file's tail is given back
    compacted = None
    if plan.compact_free_share is not None:
        compacted = compact(settings, plan.provider_id, plan.compact_free_share)
    for parent in sorted({folder.parent for folder in plan.folders}):  # an earlier prune killed mid-removal
        remove_dead_temp_files(parent, (".",))
    for folder in plan.folders:
        if folder.exists():
            _remove_folder(folder)
    cleaned = None
    if airflow_records and plan.metadata_before is not None:
        done = clean_airflow_records(plan.dag_ids, plan.metadata_before)
        cleaned = {"returncode": done.returncode, "output": (done.stdout + done.stderr).strip()[-2000:]}
    removed = [r for r in plan.removals if not r.kept]
    given_back = compacted["bytes_before"] - compacted["bytes_after"] if compacted else 0
    return {"removed": len(removed), "bytes": sum(r.bytes for r in removed) + given_back,
            "airflow_records": cleaned, "compacted": compacted}
