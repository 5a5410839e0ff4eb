"""build_features: the pipeline's feature SQL files, run in the provider's warehouse once per as-of date.

Each file runs for every feature date (`feature_dates`), the drop's own date first, and every range of
customer ids (`customer_bounds`), with `$as_of`, `$purpose`, `$customer_from` and `$customer_to` bound:
one GROUP BY customer_id per date and range, whose aggregate state fits a 1GB DuckDB memory limit at
millions of customers (grouping every date at once spilled to disk, 4x slower). In a DAG the same files
run through common-sql's SQLExecuteQueryOperator (batchops.airflow_ops), so the UI shows each rendered
statement; this function is the Airflow-free path for tests and tools."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from batchops.config import PipelineSpec
from batchops.runcontext import RunContext
from batchops.sqlfiles import run_sql_file
from batchops.storage.versions import VISIBLE_AT
from batchops.storage.warehouse import open_warehouse


def feature_parameters(pipeline: PipelineSpec) -> dict[str, Any]:
    """The bound parameters of the feature SQL, besides snapshot_date, as_of and purpose."""
    train = "train" in pipeline.stages
    return {"horizon_days": pipeline.label.horizon_days,
            "training_snapshots": pipeline.label.training_snapshots if train else 0,
            "snapshot_step_days": pipeline.label.snapshot_step_days}


def feature_dates(snapshot_date: date, parameters: dict[str, Any]) -> list[tuple[date, str]]:
    """(as_of, purpose) of every feature row set of a drop: the drop's date ('score') first, then the
    training dates T - horizon - k * step, newest first."""
    horizon, step = int(parameters["horizon_days"]), int(parameters["snapshot_step_days"])
    return [(snapshot_date, "score")] + [(snapshot_date - timedelta(days=horizon + k * step), "train")
                                         for k in range(int(parameters["training_snapshots"]))]


def customer_ranges(bounds: list[str]) -> list[tuple[str | None, str | None]]:
    """[from, to) ranges of customer ids split at `bounds` (sorted); None is an open end."""
    edges: list[str | None] = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def per_date_parameters(parameters: dict[str, Any], bounds: list[str] | None = None) -> list[dict[str, Any]]:
    """The parameter set of each run of the feature files: `parameters` plus as_of, purpose and the range of
    customer ids (customer_from, customer_to), dates in feature_dates order."""
    snapshot = date.fromisoformat(str(parameters["snapshot_date"]))
    return [{**parameters, "as_of": as_of.isoformat(), "purpose": purpose, "customer_from": low, "customer_to": high}
            for as_of, purpose in feature_dates(snapshot, parameters) for low, high in customer_ranges(bounds or [])]


def customer_bounds(warehouse, snapshot_date: str, range_size: int) -> list[str]:
    """Customer ids that split the snapshot's customers into ranges of about `range_size` (none when they
    fit one). At 3M customers one GROUP BY per date spilled to disk under a 1GB DuckDB limit (10.1 s a
    date); three ranges of 1M took 6.3 s. Ranges of ids, not hash shares: a hash filter on the id cost
    3x per pass (docs/performance.md)."""
    customers = warehouse.execute(f"SELECT count(*) FROM customers WHERE {VISIBLE_AT}",
                                  {"snapshot_date": snapshot_date}).fetchone()[0]
    parts = -(-customers // range_size)
    if parts <= 1:
        return []
    found = warehouse.execute(
        f"SELECT quantile_disc(customer_id, $q) FROM customers WHERE {VISIBLE_AT}",
        {"q": [k / parts for k in range(1, parts)], "snapshot_date": snapshot_date}).fetchone()[0]
    return sorted(set(found))


def build_features(ctx: RunContext) -> dict[str, Any]:
    parameters = {"snapshot_date": ctx.snapshot_date.isoformat(), **feature_parameters(ctx.pipeline)}
    log = ctx.logger("build_features")
    with log.timed("build_features", **parameters) as logged, \
            open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        bounds = customer_bounds(warehouse, parameters["snapshot_date"], ctx.settings.feature_partition_customers)
        runs = per_date_parameters(parameters, bounds)
        for name in ctx.pipeline.features.sql:
            for run_parameters in runs:
                run_sql_file(warehouse, ctx.settings.sql_dir, name, run_parameters)
        counts = dict(warehouse.execute(
            "SELECT purpose, count(*) FROM features WHERE source_snapshot = CAST($d AS DATE) GROUP BY ALL",
            {"d": parameters["snapshot_date"]}).fetchall())
        logged.update(rows=counts, customer_ranges=len(bounds) + 1)
        # logged while the lock is held: a rebuild that takes the lock next sees this run
        log.event("features_built", pipeline=ctx.pipeline.pipeline_id, snapshot_date=parameters["snapshot_date"])
    return {"rows": counts}
