"""build_features: the pipeline's feature SQL files, run in the provider's warehouse once per as-of date.

Each file runs for every feature date (`feature_dates`), the drop's own date first, with `$as_of` and
`$purpose` bound: one GROUP BY customer_id per date, whose aggregate state fits the default DuckDB
memory limit at millions of customers (grouping every date at once spilled to disk, 4x slower).
In a DAG the same files run through common-sql's SQLExecuteQueryOperator (batchops.airflow_ops),
so the UI shows each rendered statement; this function is the Airflow-free path for tests and tools.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from batchops.config import PipelineSpec
from batchops.runcontext import RunContext
from batchops.sqlfiles import run_sql_file
from batchops.warehouse import open_warehouse


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


def customer_shares(customers: int, share_size: int) -> int:
    """How many hash shares of the customers each date is aggregated in: one up to `share_size` customers.
    At 3M customers one GROUP BY spilled to disk under a 1GB memory limit (10.1 s a date); three shares of
    1M took 6.3 s (docs/performance.md)."""
    return max(1, -(-customers // share_size))


def per_date_parameters(parameters: dict[str, Any], customers: int = 0,
                        share_size: int = 1_000_000) -> list[dict[str, Any]]:
    """The parameter set of each run of the feature files: `parameters` plus as_of, purpose and the share of
    the customers (part of parts), dates in feature_dates order."""
    snapshot = date.fromisoformat(str(parameters["snapshot_date"]))
    parts = customer_shares(customers, share_size)
    return [{**parameters, "as_of": as_of.isoformat(), "purpose": purpose, "part": part, "parts": parts}
            for as_of, purpose in feature_dates(snapshot, parameters) for part in range(parts)]


def snapshot_customers(warehouse, snapshot_date: str) -> int:
    return warehouse.execute("SELECT count(*) FROM customers WHERE snapshot_date = CAST($d AS DATE)",
                             {"d": snapshot_date}).fetchone()[0]


def build_features(ctx: RunContext) -> dict[str, Any]:
    parameters = {"snapshot_date": ctx.snapshot_date.isoformat(), **feature_parameters(ctx.pipeline)}
    with ctx.logger("build_features").timed("build_features", **parameters) as logged, \
            open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        runs = per_date_parameters(parameters, snapshot_customers(warehouse, parameters["snapshot_date"]),
                                   ctx.settings.feature_partition_customers)
        for name in ctx.pipeline.features.sql:
            for run_parameters in runs:
                run_sql_file(warehouse, ctx.settings.sql_dir, name, run_parameters)
        counts = dict(warehouse.execute(
            "SELECT purpose, count(*) FROM features WHERE source_snapshot = CAST($d AS DATE) GROUP BY ALL",
            {"d": parameters["snapshot_date"]}).fetchall())
        logged.update(rows=counts, customer_shares=runs[0]["parts"])
    return {"rows": counts}
