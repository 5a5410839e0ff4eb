"""load: replace this snapshot's rows of every entity in the provider's warehouse, all or nothing.

common-sql's SQLExecuteQueryOperator is not used here: the table name comes from the config (one
statement set per entity) and the row counts must be verified inside the same transaction.
"""

from __future__ import annotations

from typing import Any

from batchops.errors import WarehouseError, is_duckdb_error
from batchops.faults import crash_point
from batchops.runcontext import RunContext
from batchops.sqlfiles import run_sql_file
from batchops.sqlsafe import quote_identifier
from batchops.storage.warehouse import open_warehouse, transaction


def _load_entity(warehouse, ctx: RunContext, entity: str) -> int:
    """Replace this snapshot's rows of one entity (inside the caller's transaction); returns the count."""
    staging = ctx.staging_dir / f"{entity}.parquet"
    if not staging.exists():
        raise WarehouseError(f"{staging} is missing; clear the run from ingest to rebuild it")
    parameters = {"staging_path": str(staging), "snapshot_date": ctx.snapshot_date.isoformat(), "load_id": ctx.run_id}
    table = quote_identifier(entity)
    try:
        run_sql_file(warehouse, ctx.settings.sql_dir, "load_entity.sql", parameters, {"table": table})
    except Exception as exc:
        if is_duckdb_error(exc):
            raise WarehouseError(
                f"loading {entity} into {warehouse.path} failed: {exc}. If the provider config "
                "changed the entity's columns, migrate the table or use a new entity name.") from exc
        raise
    loaded = warehouse.execute(f"SELECT count(*) FROM {table} WHERE snapshot_date = CAST($d AS DATE)",
                               {"d": parameters["snapshot_date"]}).fetchone()[0]
    staged = warehouse.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(staging)}).fetchone()[0]
    if loaded != staged:
        raise WarehouseError(f"{entity}: {loaded} rows in the warehouse after load, {staged} staged")
    run_sql_file(warehouse, ctx.settings.sql_dir, "load_audit.sql", {**parameters, "entity": entity, "row_count": loaded})
    return loaded


def _derive_entity(warehouse, ctx: RunContext, entity: str) -> int:
    """Rebuild the snapshot's rows of an entity the provider does not deliver, from the ones it does."""
    parameters = {"snapshot_date": ctx.snapshot_date.isoformat(), "load_id": ctx.run_id}
    run_sql_file(warehouse, ctx.settings.sql_dir, ctx.pipeline.derived_entities[entity].sql, parameters)
    derived = warehouse.execute(f"SELECT count(*) FROM {quote_identifier(entity)} WHERE snapshot_date = CAST($d AS DATE)",
                                {"d": parameters["snapshot_date"]}).fetchone()[0]
    run_sql_file(warehouse, ctx.settings.sql_dir, "load_audit.sql", {**parameters, "entity": entity, "row_count": derived})
    return derived


def load(ctx: RunContext) -> dict[str, Any]:
    """Replace the snapshot's rows of every delivered entity, then derive the ones the provider leaves out."""
    log = ctx.logger("load")
    counts: dict[str, int] = {}
    derived = [entity for entity in ctx.pipeline.derived_entities if entity not in ctx.provider.entities]
    with log.timed("load", snapshot_date=ctx.snapshot_date.isoformat(), load_id=ctx.run_id) as logged:
        with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
            # Rows of a snapshot carry no order (every reader groups or sorts), and keeping the file's order
            # made the insert's parallel row groups be rewritten at the closing checkpoint: M 14.0 s -> 9.8 s
            # for 20M transactions, and a 20% smaller file.
            warehouse.execute("SET preserve_insertion_order = false")
            with transaction(warehouse):
                for entity in ctx.provider.entities:
                    counts[entity] = _load_entity(warehouse, ctx, entity)
                    crash_point("load.in_transaction", ctx.dag_id, ctx.run_dir)
                for entity in derived:
                    counts[entity] = _derive_entity(warehouse, ctx, entity)
            # Committed, not yet checkpointed: the rows live in the .wal until the file is next opened.
            crash_point("load.committed", ctx.dag_id, ctx.run_dir)
        logged.update(rows=counts)
    return {"rows": counts, "load_id": ctx.run_id, "warehouse": str(ctx.settings.warehouse_dir)}
