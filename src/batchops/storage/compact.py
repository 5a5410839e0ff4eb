"""Give the disk back: rewrite a provider's warehouse without the space its deleted rows held.

DuckDB reuses the blocks that deletes free (retention, a rerun replacing a day) but never shrinks its file,
and rows deleted from a row group that still holds live ones keep their space until the group is rewritten.
`compact` copies every table into a new file (COPY FROM DATABASE writes only live rows), checks that each
table reads back with the same row count and checksum, and swaps the copy in through the journaled
`swap_in` (a kill at any step leaves the old file or the new one under the warehouse's name). All of it
under the provider lock, so no run writes in between. The replaced file is deleted once the swap is done:
it held the same rows, verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchops.recovery import remove_dead_temp_files
from batchops.settings import Settings
from batchops.sqlsafe import quote_identifier
from batchops.storage.backup import fault_point_for, incoming_path, stamp, table_fingerprints, verify_copy
from batchops.storage.warehouse import duckdb_config, swap_in, wal_path, warehouse_lock, warehouse_path

REPLACED_MARK = ".compacted-"


def free_bytes(connection) -> tuple[int, int]:
    """(the database file's bytes, of which free blocks) of the connection's own database."""
    block_size, total, free = connection.execute(
        "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()").fetchone()
    return int(block_size) * int(total), int(block_size) * int(free)


def _remove_replaced_files(target: Path) -> None:
    """Files a compaction replaced and was killed before deleting (the swap itself was completed)."""
    for leftover in target.parent.glob(f"{target.name}{REPLACED_MARK}*"):
        leftover.unlink(missing_ok=True)


def compact(settings: Settings, provider_id: str, min_free_share: float = 0.0) -> dict[str, Any]:
    """Rewrite the warehouse when at least `min_free_share` of its file is free blocks (0: always).
    Returns {"compacted", "bytes_before", "free_before", "bytes_after"}."""
    import duckdb  # heavy import kept out of DAG parsing

    target = warehouse_path(settings, provider_id)
    if not target.exists():
        return {"compacted": False, "bytes_before": 0, "free_before": 0, "bytes_after": 0}
    fault = fault_point_for(settings, provider_id)
    with warehouse_lock(settings, provider_id):
        _remove_replaced_files(target)
        remove_dead_temp_files(target.parent, (f".{target.name}.",))
        connection = duckdb.connect(str(target), config=duckdb_config(settings))
        incoming: Path | None = None
        try:
            connection.execute("CHECKPOINT")  # the file alone holds every commit; deleted blocks counted free
            size, free = free_bytes(connection)
            size = max(size, target.stat().st_size)
            if size == 0 or free < min_free_share * size:
                return {"compacted": False, "bytes_before": size, "free_before": free, "bytes_after": size}
            live = table_fingerprints(connection)
            incoming = incoming_path(target)
            incoming.unlink()  # DuckDB creates the file itself (an empty file is not a database to it)
            database = connection.execute("SELECT current_database()").fetchone()[0]
            connection.execute("ATTACH ? AS batchops_compacted", [str(incoming)])
            connection.execute(f"COPY FROM DATABASE {quote_identifier(database)} TO batchops_compacted")
            connection.execute("DETACH batchops_compacted")
        except BaseException:
            if incoming is not None:
                incoming.unlink(missing_ok=True)
                wal_path(incoming).unlink(missing_ok=True)
            raise
        finally:
            connection.close()
        try:
            verify_copy(incoming, live, f"the compacted copy of {target}", "the warehouse was left as it was")
            wal_path(incoming).unlink(missing_ok=True)  # read-only opens leave none; never carry one over
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        fault("compact.copied")
        kept = swap_in(target, incoming, target.with_name(f"{target.name}{REPLACED_MARK}{stamp()}"), fault)
        fault("compact.swapped")
        if kept is not None:
            kept.unlink(missing_ok=True)
            wal_path(kept).unlink(missing_ok=True)
        return {"compacted": True, "bytes_before": size, "free_before": free, "bytes_after": target.stat().st_size}
