"""build_features: the pipeline's feature SQL files, run in the provider's warehouse.

In a DAG the same files run through common-sql's SQLExecuteQueryOperator (batchops.airflow_ops),
so the UI shows each rendered statement; this function is the Airflow-free path for tests and tools.
"""

from __future__ import annotations

from typing import Any

from batchops.config import PipelineSpec
from batchops.runcontext import RunContext
from batchops.sqlfiles import run_sql_file
from batchops.warehouse import open_warehouse


def feature_parameters(pipeline: PipelineSpec) -> dict[str, Any]:
    """The bound parameters of the feature SQL, besides snapshot_date."""
    train = "train" in pipeline.stages
    return {"horizon_days": pipeline.label.horizon_days,
            "training_snapshots": pipeline.label.training_snapshots if train else 0,
            "snapshot_step_days": pipeline.label.snapshot_step_days}


def build_features(ctx: RunContext) -> dict[str, Any]:
    parameters = {"snapshot_date": ctx.snapshot_date.isoformat(), **feature_parameters(ctx.pipeline)}
    with ctx.logger("build_features").timed("build_features", **parameters) as logged, \
            open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        for name in ctx.pipeline.features.sql:
            run_sql_file(warehouse, ctx.settings.sql_dir, name, parameters)
        counts = dict(warehouse.execute(
            "SELECT purpose, count(*) FROM features WHERE source_snapshot = CAST($d AS DATE) GROUP BY ALL",
            {"d": parameters["snapshot_date"]}).fetchall())
        logged.update(rows=counts)
    return {"rows": counts}
