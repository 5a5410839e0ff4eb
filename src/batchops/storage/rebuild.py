"""Rebuilding a provider's warehouse from its landing drops.

The landing drops are the source of truth and the warehouse is derived from them, so a damaged file is
never the end: `rebuild` takes the provider's lock first (runs wait instead of writing to a file about to
be replaced, and every run that committed before is in the run folders it reads), then loads every drop
again into a new file (data tables, then features and labels for the pipelines that built them, the models
from the store's registry.json files and the predictions from the run folders), and swaps it in. A drop
that cannot be rebuilt, a run folder or model sidecar that cannot be read, is listed with the reason and
the command ends non-zero; the replaced file is kept beside the warehouse, never deleted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from batchops.artifacts import sha256_of_file
from batchops.config import ConfigSet, PipelineSpec, ProviderConfig
from batchops.faults import pause_point
from batchops.models import REGISTRY_FIELDS, REGISTRY_SIDECAR, ensure_registry, register_model
from batchops.owner import owner_tag
from batchops.recovery import remove_dead_temp_files
from batchops.runcontext import RunContext
from batchops.runlog import read_events
from batchops.settings import Settings
from batchops.sqlfiles import run_sql_file
from batchops.storage.backup import MaintenanceError, fault_point_for, incoming_path, stamp, verify_database
from batchops.storage.warehouse import open_warehouse, swap_in, transaction, warehouse_lock, warehouse_path

# Events that say a run's rows are in the warehouse: logged while the run still holds the provider lock
# (features_built, predictions_published), or by runs from before those events existed (the stage's end).
FEATURES_EVENTS = ("features_built",)
PREDICTIONS_EVENTS = ("predictions_published",)
SIDECAR_KEYS = REGISTRY_FIELDS


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

    # pipeline -> the run folder of its latest feature build, in the order the pipelines first built them
    feature_runs: dict[str, Path] = dataclasses.field(default_factory=dict)
    predictions: tuple[str, Path] | None = None  # (run id, predictions.parquet) of the last scoring

    @property
    def feature_pipelines(self) -> list[str]:
        return list(self.feature_runs)


def _finished(event: dict[str, Any], stage: str, new_events: tuple[str, ...]) -> bool:
    if event.get("event") in new_events:
        return True
    # before features_built/predictions_published: a DAG task logged stage_finished, a direct call <stage>_finished
    return event.get("stage") == stage and event.get("event") in ("stage_finished", f"{stage}_finished")


def run_history(settings: Settings, provider: ProviderConfig,
                problems: list[str] | None = None) -> dict[date, SnapshotHistory]:
    """Per snapshot: which pipelines built features, and the latest run's predictions. A run folder whose
    plan.json cannot be read is named in `problems` and left out; linked folders are never followed."""
    problems = [] if problems is None else problems
    finished: list[tuple[str, str, date, str, Path]] = []  # (time, kind, snapshot, pipeline or run id, path)
    for pipeline_id in provider.pipelines:
        dag_folder = settings.runs_dir / f"{provider.provider_id}__{pipeline_id}"
        if dag_folder.is_symlink() or not dag_folder.is_dir():
            continue
        for run_folder in sorted(dag_folder.iterdir()):
            plan_file = run_folder / "plan.json"
            if run_folder.is_symlink() or plan_file.is_symlink() or not plan_file.is_file():
                continue
            try:
                plan = json.loads(plan_file.read_text(encoding="utf-8"))
                snapshot, run_id = date.fromisoformat(plan["snapshot_date"]), str(plan["run_id"])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{plan_file}: not a readable plan ({type(exc).__name__}: {exc}); this run's "
                                "features and predictions were not rebuilt")
                continue
            predictions = run_folder / "predictions" / "predictions.parquet"
            for event in read_events(run_folder / "logs.jsonl"):
                if _finished(event, "build_features", FEATURES_EVENTS):
                    finished.append((event.get("ts", ""), "features", snapshot, pipeline_id, run_folder))
                elif _finished(event, "score", PREDICTIONS_EVENTS) and predictions.is_file():
                    finished.append((event.get("ts", ""), "predictions", snapshot, run_id, run_folder))
    history: dict[date, SnapshotHistory] = {}
    for _, kind, snapshot, name, run_folder in sorted(finished, key=lambda item: item[0]):
        entry = history.setdefault(snapshot, SnapshotHistory())
        if kind == "features":
            entry.feature_runs[name] = run_folder
        else:
            entry.predictions = (name, run_folder / "predictions" / "predictions.parquet")
    return history


def prediction_files(settings: Settings, provider: ProviderConfig, since: date | None = None,
                     until: date | None = None) -> dict[date, tuple[str, Path]]:
    """Per snapshot in [since, until]: (run id, predictions.parquet) of its latest scoring run still in runs/ -
    the predictions of every day run_days keeps, where the warehouse keeps only prediction_days."""
    return {snapshot: entry.predictions for snapshot, entry in sorted(run_history(settings, provider).items())
            if entry.predictions and (since is None or snapshot >= since) and (until is None or snapshot <= until)}


def without_pruned(history: dict[date, SnapshotHistory], watermarks: dict[str, date],
                    note: Callable[[str], None]) -> dict[date, SnapshotHistory]:
    """The history without the features and predictions that retention removed (prune's watermarks): a rebuild
    gives back the warehouse as it was, not rows pruned away."""
    kept = {}
    for snapshot, entry in history.items():
        features = entry.feature_runs if snapshot >= watermarks.get("features", date.min) else {}
        predictions = entry.predictions if snapshot >= watermarks.get("predictions", date.min) else None
        left_out = [name for name, was, now in (("features", entry.feature_runs, features),
                                                ("predictions", entry.predictions, predictions)) if was and not now]
        if left_out:
            note(f"{snapshot}: {' and '.join(left_out)} not rebuilt: removed by retention (prune)")
        kept[snapshot] = SnapshotHistory(features, predictions)
    return kept


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


def _stored_model_entries(settings: Settings, provider_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The registry.json entries of the store whose model bytes are still the ones trained, and why others
    were left out (missing or changed model, unreadable sidecar, no sidecar)."""
    store = settings.model_store(provider_id)
    entries, skipped = [], []
    if not store.is_dir():
        return entries, skipped
    for directory in sorted(store.iterdir()):
        if not directory.is_dir() or directory.is_symlink() or directory.name.startswith("."):
            continue
        sidecar = directory / REGISTRY_SIDECAR
        if not sidecar.is_file():
            skipped.append(f"{directory.name}: no {REGISTRY_SIDECAR} (trained before sidecars); retrain to register")
            continue
        try:
            entry = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError as exc:
            skipped.append(f"{sidecar}: not valid JSON ({exc})")
            continue
        lacking = [key for key in SIDECAR_KEYS if not isinstance(entry, dict) or key not in entry]
        if lacking:
            skipped.append(f"{sidecar}: not a registry entry (no {', '.join(lacking)})")
            continue
        model_file = directory / "model.pkl"
        if not model_file.is_file() or sha256_of_file(model_file) != entry["sha256"]:
            skipped.append(f"{directory.name}: model.pkl missing or changed since training")
            continue
        entries.append(entry)
    return entries, skipped


def _register_stored_models(settings: Settings, build: Settings, provider_id: str,
                            note: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Re-register every model of the store from its registry.json, if its bytes are still the ones trained."""
    entries, skipped = _stored_model_entries(settings, provider_id)
    registered = []
    with open_warehouse(build, provider_id) as warehouse, transaction(warehouse):
        ensure_registry(warehouse, build)
        for entry in sorted(entries, key=lambda e: str(e["registered_at"])):
            register_model(warehouse, build, entry)
            registered.append(entry["model_id"])
    for reason in skipped:
        note(f"model not re-registered: {reason}")
    return registered, skipped


def loaded_drops(path: Path, note: Callable[[str], None]) -> list[date] | None:
    """The snapshot dates the warehouse file says it loaded (load_audit); None when there is no file or it
    cannot be read (a damaged file is what a rebuild is for; the run folders still tell)."""
    if not path.exists():
        return None
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'load_audit'").fetchone()[0]:
                return []
            return [row[0] for row in con.execute("SELECT DISTINCT snapshot_date FROM load_audit ORDER BY 1").fetchall()]
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; the rebuild still runs
        note(f"the warehouse's load record cannot be read ({type(exc).__name__}), so the drops it loaded are not "
             "checked against the landing folder")
        return None


def rebuild(settings: Settings, config_set: ConfigSet, provider_id: str, since: date | None = None,
            note: Callable[[str], None] = print, skip: list[date] | tuple[date, ...] = (),
            allow_missing_drops: bool = False) -> dict[str, Any]:
    """Build the provider's warehouse anew from its landing drops and swap it in under the provider lock.

    The lock is taken first and held to the end, so runs of this provider wait instead of writing to a file
    that is about to be replaced. Drops before `since` and those in `skip` are left out; a drop that fails
    is listed in result["failed"] and the others are still rebuilt. A drop the current warehouse loaded
    (load_audit) whose landing folder is gone (archived, deleted) stops the rebuild before anything is
    built, since the new file would silently lack its rows, unless `allow_missing_drops`."""
    if provider_id not in config_set.providers:
        raise MaintenanceError(f"no valid provider config {provider_id!r}; known: {sorted(config_set.providers)}")
    provider = config_set.providers[provider_id]
    pipelines = {p: config_set.pipeline_for(provider_id, p) for p in provider.pipelines if p in config_set.pipelines}
    loading = next((pipelines[p] for p in provider.pipelines if "load" in pipelines[p].stages), None)
    if loading is None:
        raise MaintenanceError(f"{provider_id} has no pipeline with a load stage; nothing builds its warehouse")
    found = landing_snapshots(provider, settings.data_dir)
    unknown_skips = sorted(set(skip) - set(found))
    if unknown_skips:
        raise MaintenanceError(f"--skip {', '.join(map(str, unknown_skips))}: no landing drop of {provider_id} on that "
                               f"date; drops found: {', '.join(map(str, found)) or 'none'}")
    snapshots = [s for s in found if (since is None or s >= since) and s not in skip]
    if not snapshots:
        raise MaintenanceError(f"no landing drops of {provider_id} under {settings.data_dir} "
                               f"(landing_path {provider.landing_path!r}){f' from {since}' if since else ''}"
                               f"{' besides the skipped ones' if skip else ''}")
    target = warehouse_path(settings, provider_id)
    started = stamp()
    problems: list[str] = []
    pause_point("rebuild.before_lock", provider_id, settings.warehouse_dir / "tmp" / provider_id)
    with warehouse_lock(settings, provider_id):
        history = run_history(settings, provider, problems)  # under the lock: every committed run is in it
        # the drops the warehouse holds: its load record and, when the file is too damaged to say, the run
        # folders of the drops features were built from (a loaded drop)
        loaded = set(loaded_drops(target, note) or ()) | set(history)
        missing = sorted(d for d in loaded if d not in found and (since is None or d >= since))
        if missing and not allow_missing_drops:
            listed = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise MaintenanceError(
                f"{len(missing)} drop(s) of {provider_id} that the warehouse loaded are no longer under "
                f"{settings.data_dir} (landing_path {provider.landing_path!r}): {listed}. A rebuild from the drops "
                "left would lose their rows, so nothing was replaced. Put those drops back, or restore a backup "
                f"instead (python -m batchops restore --provider {provider_id}), or rebuild without them "
                f"knowingly: python -m batchops rebuild --provider {provider_id} --allow-missing-drops")
        for day in missing:
            note(f"{day}: loaded before, landing drop gone: left out (--allow-missing-drops)")
        remove_dead_temp_files(settings.warehouse_dir, (f".rebuild-{provider_id}.", f".{target.name}."))
        from batchops.storage.retention import read_watermarks

        history = without_pruned(history, read_watermarks(settings, provider_id), note)
        for problem in problems:
            note(f"run folder left out: {problem}")
        scratch = Path(tempfile.mkdtemp(prefix=f".rebuild-{provider_id}.{owner_tag()}.", dir=settings.warehouse_dir))
        try:
            build = dataclasses.replace(settings, warehouse_dir=scratch)
            results = []
            for snapshot in snapshots:
                ctx = RunContext(f"{provider_id}__rebuild", f"rebuild__{started}__{snapshot}", provider, loading,
                                 snapshot, build)
                try:
                    results.append(_rebuild_snapshot(ctx, history.get(snapshot), pipelines, note))
                except Exception as exc:  # noqa: BLE001 - one drop's trouble must not stop the others
                    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                    note(f"{snapshot}: NOT REBUILT: {reason}")
                    results.append({"snapshot_date": snapshot.isoformat(), "loaded": False, "failed": reason})
            registered, skipped = _register_stored_models(settings, build, provider_id, note)
            built = warehouse_path(build, provider_id)
            if not built.exists():
                failed = [r for r in results if r.get("failed")]
                raise MaintenanceError(f"no drop of {provider_id} could be rebuilt ({len(failed)} failed: "
                                       + "; ".join(f"{r['snapshot_date']}: {r['failed']}" for r in failed[:3])
                                       + "); nothing was replaced")
            tables = verify_database(built)
            incoming = incoming_path(target)  # beside the warehouse: the swap is one rename on one file system
            os.replace(built, incoming)
            kept = swap_in(target, incoming, target.with_name(f"{target.name}.replaced-{started}"),
                           fault_point_for(settings, provider_id))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"warehouse": str(target), "snapshots": results, "models_registered": registered,
            "models_skipped": skipped, "tables": tables, "previous_file": str(kept) if kept else None,
            "left_out_before": since.isoformat() if since else None,
            "skipped": [s.isoformat() for s in sorted(skip)],
            "missing_drops_left_out": [d.isoformat() for d in missing],
            "failed": [r for r in results if r.get("failed")], "unreadable_runs": problems}
