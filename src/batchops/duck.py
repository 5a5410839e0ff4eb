"""In-memory DuckDB sessions for stages that do not touch the warehouse (ingest, validate)."""

from __future__ import annotations

from batchops.settings import Settings
from batchops.warehouse import duckdb_config


def scratch_connection(settings: Settings):
    """A private in-memory DuckDB with the deployment's memory/thread limits and a spill folder."""
    import duckdb

    connection = duckdb.connect(":memory:", config=duckdb_config(settings))
    spill = settings.warehouse_dir / "tmp" / "scratch"
    spill.mkdir(parents=True, exist_ok=True)
    connection.execute("SET temp_directory = ?", [str(spill)])
    return connection
