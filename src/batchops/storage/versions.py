"""Entity tables as versions by delivery: every drop's rows stored once, each run reading what its drop saw.

An entity's table holds each version of a row once, with `valid_from` (the drop that delivered it) and
`valid_to` (the drop from which it no longer holds; NULL while it does). A run of drop D reads the rows with
valid_from <= D < valid_to (VISIBLE_AT), so it never sees a later drop, and a backfill of D gives what D gave.

How a drop becomes versions depends on the entity's `delivery`:
- snapshot (a full extract): only what changed since the stored state is written; a drop later than every
  stored one compares bucket checksums first (load_snapshot.sql), the latest drop loaded again is first
  undone (rewind_snapshot.sql), a drop between stored ones replaces exactly its own slice of time
  (load_snapshot_between.sql), and one delivered again unchanged writes nothing;
- incremental without a primary key: the drop's rows are appended (load_incremental.sql);
- incremental with a primary key: a key delivered again supersedes its earlier version from that drop on,
  a correction (load_incremental_keyed.sql).
Every load is checked before its transaction commits: the rows a run of D will read are the ones delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from batchops.errors import WarehouseError
from batchops.sqlfiles import run_sql_file
from batchops.sqlsafe import parameters_used, quote_identifier, string_literal

VERSION_COLUMNS = ("valid_from", "valid_to", "load_id")
# The rows of an entity that a run of drop $snapshot_date reads (every SQL file that reads entities uses it).
VISIBLE_AT = ("valid_from <= CAST($snapshot_date AS DATE) "
              "AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE))")


def visible_rows(table: str) -> str:
    """`SELECT * FROM <table>` restricted to the versions a run of $snapshot_date sees."""
    return f"SELECT * EXCLUDE (valid_from, valid_to, load_id) FROM {quote_identifier(table)} WHERE {VISIBLE_AT}"


@dataclass(frozen=True)
class EntityLoad:
    """One entity's drop about to be stored: where its rows are (the `staged` view) and how they are delivered."""

    entity: str
    delivery: str  # snapshot | incremental
    primary_key: tuple[str, ...]
    snapshot_date: date
    load_id: str


def _columns_sql(columns: list[str], alias: str | None = None) -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{quote_identifier(c)}" for c in columns)


def _same(columns: list[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote_identifier(c)} IS NOT DISTINCT FROM {right}.{quote_identifier(c)}"
                        for c in columns)


def stage(warehouse, source_sql: str) -> list[str]:
    """Make `staged` (a temp view over the drop's rows) and return its columns. source_sql is ours: a
    read_parquet of a staging file, or a derived entity's SELECT already bound to its date."""
    warehouse.execute(f"CREATE OR REPLACE TEMP VIEW staged AS {source_sql}")
    return [row[0] for row in warehouse.execute("DESCRIBE staged").fetchall()]


def stage_parquet(warehouse, path) -> list[str]:
    return stage(warehouse, f"SELECT * FROM read_parquet({string_literal(str(path))})")


def table_columns(warehouse, table: str) -> list[str] | None:
    found = warehouse.execute("SELECT column_name FROM information_schema.columns WHERE table_name = $t "
                              "AND table_schema = 'main' ORDER BY ordinal_position", {"t": table}).fetchall()
    return [row[0] for row in found] or None


def ensure_versioned_table(warehouse, sql_dir, entity: str, columns: list[str]) -> str:
    """Create the entity's table, or move one written before versions (a full copy per snapshot_date) to
    versions; refuse a table whose columns differ from the drop's. Returns what was done, for the log."""
    existing = table_columns(warehouse, entity)
    table = quote_identifier(entity)
    if existing is None:
        run_sql_file(warehouse, sql_dir, "entity_versions.sql", {}, {"table": table, "columns": _columns_sql(columns)})
        return "created"
    done = "kept"
    if "snapshot_date" in existing and "valid_from" not in existing:
        old_columns = [c for c in existing if c not in ("snapshot_date", "load_id")]
        new_table = quote_identifier(f"{entity}__versions")
        warehouse.execute(f"DROP TABLE IF EXISTS {new_table}")
        run_sql_file(warehouse, sql_dir, "migrate_entity_versions.sql", {},
                     {"table": table, "new_table": new_table, "columns": _columns_sql(old_columns)})
        warehouse.execute(f"DROP TABLE {table}")
        warehouse.execute(f"ALTER TABLE {new_table} RENAME TO {table}")
        existing = table_columns(warehouse, entity)
        done = "moved to versions (one copy of each row instead of one per snapshot)"
    stored = [c for c in existing if c not in VERSION_COLUMNS]
    if stored != columns:
        raise WarehouseError(
            f"the warehouse table {entity} has columns {stored}, this drop has {columns}: the provider config "
            "changed the entity's columns. Migrate the table (or rebuild the warehouse from the landing drops, "
            "python -m batchops rebuild) or use a new entity name")
    return done


def loaded_dates(warehouse, entity: str) -> list[date]:
    """The drops of the entity stored so far (load_audit), oldest first."""
    if table_columns(warehouse, "load_audit") is None:
        return []
    return [row[0] for row in warehouse.execute(
        "SELECT snapshot_date FROM load_audit WHERE entity = $e ORDER BY 1", {"e": entity}).fetchall()]


def fingerprint(warehouse, relation_sql: str, columns: list[str], parameters: dict[str, Any] | None = None):
    """(rows, checksum) of a relation's columns: what two sets of rows must share to be the same multiset."""
    sql = f"SELECT count(*), coalesce(sum(hash({_columns_sql(columns)})), 0) FROM ({relation_sql})"
    return warehouse.execute(sql, parameters_used(sql, parameters or {})).fetchone()


def _visible_sql(entity: str, columns: list[str]) -> str:
    return f"SELECT {_columns_sql(columns)} FROM {quote_identifier(entity)} WHERE {VISIBLE_AT}"


def bucket_column(columns: list[str], primary_key: tuple[str, ...]) -> str:
    """What the snapshot load compares checksums by: customer_id (a day's changes touch few customers), else
    the first key column, else one bucket for the whole entity."""
    for candidate in ("customer_id", *primary_key[:1]):
        if candidate in columns:
            return quote_identifier(candidate)
    return "CAST(NULL AS VARCHAR)"


def store_drop(warehouse, sql_dir, load: EntityLoad, columns: list[str]) -> dict[str, Any]:
    """Store the `staged` rows as the entity's drop of load.snapshot_date (inside the caller's transaction).
    Returns how: the path taken and the rows written."""
    entity, table = load.entity, quote_identifier(load.entity)
    parameters = {"snapshot_date": load.snapshot_date.isoformat(), "load_id": load.load_id}
    identifiers = {"table": table, "columns": _columns_sql(columns)}
    before = warehouse.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    dates = loaded_dates(warehouse, entity)
    later = [d for d in dates if d > load.snapshot_date]
    if load.delivery == "incremental":
        if load.primary_key:
            key = list(load.primary_key)
            run_sql_file(warehouse, sql_dir, "load_incremental_keyed.sql", parameters, {
                **identifiers, "key": _columns_sql(key), "same_key_table_versions": _same(key, table, "versions")})
            path = "incremental, keyed: new keys added, delivered keys superseded from this drop"
        else:
            run_sql_file(warehouse, sql_dir, "load_incremental.sql", parameters, identifiers)
            path = "incremental: rows appended"
    elif load.snapshot_date in dates and later and \
            fingerprint(warehouse, _visible_sql(entity, columns), columns, parameters) == \
            fingerprint(warehouse, f"SELECT {_columns_sql(columns)} FROM staged", columns):
        path = "snapshot delivered again, unchanged: nothing written"
    elif later:
        run_sql_file(warehouse, sql_dir, "load_snapshot_between.sql", {**parameters, "next_date": later[0].isoformat()},
                     identifiers)
        path = f"snapshot between stored drops: its slice up to {later[0]} replaced"
    else:
        if dates and dates[-1] == load.snapshot_date:
            run_sql_file(warehouse, sql_dir, "rewind_snapshot.sql", parameters, identifiers)
        if not warehouse.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE valid_to IS NULL)").fetchone()[0]:
            # nothing stored to compare with (the first drop): every row is new. The comparison below would
            # group the whole extract by every column to find that out (20M generated rows: 18.4 s, this 9.6 s).
            run_sql_file(warehouse, sql_dir, "load_incremental.sql", parameters, identifiers)
            return _stored(warehouse, load, columns, parameters, before, later,
                           "snapshot: the first stored state, every row written")
        run_sql_file(warehouse, sql_dir, "load_snapshot.sql", parameters, {
            **identifiers, "bucket": bucket_column(columns, load.primary_key),
            "merged_columns": ", ".join(f"coalesce(stored.{c}, delivered.{c}) AS {c}"
                                        for c in (quote_identifier(c) for c in columns)),
            "same_row_stored_delivered": _same(columns, "stored", "delivered"),
            "same_row_table_changed": _same(columns, table, "changed_rows")})
        path = "snapshot: only rows that changed since the stored state written"
    return _stored(warehouse, load, columns, parameters, before, later, path)


def _stored(warehouse, load: EntityLoad, columns: list[str], parameters: dict[str, Any], before: int,
            later: list[date], path: str) -> dict[str, Any]:
    """Check what was stored, and say how it was stored."""
    _check_stored(warehouse, load, columns, parameters)
    after = warehouse.execute(f"SELECT count(*) FROM {quote_identifier(load.entity)}").fetchone()[0]
    # a later drop of an incremental entity now sees these rows, which its runs did not (a full extract's
    # later drops are untouched: each holds its own state)
    unseen = [d.isoformat() for d in later] if load.delivery == "incremental" else []
    return {"path": path, "stored_rows_added": after - before, "later_drops": unseen}


def _check_stored(warehouse, load: EntityLoad, columns: list[str], parameters: dict[str, Any]) -> None:
    """What a run of this drop will read must be what was delivered: the whole extract for a snapshot, this
    drop's rows for an incremental one. A difference is a bug and rolls the load back."""
    delivered = fingerprint(warehouse, f"SELECT {_columns_sql(columns)} FROM staged", columns)
    if load.delivery == "snapshot":
        stored = fingerprint(warehouse, _visible_sql(load.entity, columns), columns, parameters)
    else:
        stored = fingerprint(warehouse, f"SELECT {_columns_sql(columns)} FROM {quote_identifier(load.entity)} "
                                        "WHERE valid_from = CAST($snapshot_date AS DATE)", columns, parameters)
    if stored != delivered:
        raise WarehouseError(f"{load.entity}: after storing the drop of {load.snapshot_date}, a run would read "
                             f"{stored[0]} rows (checksum {stored[1]}) where {delivered[0]} were delivered (checksum "
                             f"{delivered[1]}); nothing was committed. Report this with the drop")
