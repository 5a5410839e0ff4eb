"""validate: the data-quality checks of each entity, as dq_report.json and dq_report.md.

One aggregate query per entity computes every metric in a single pass over the staging Parquet;
uniqueness uses GROUP BY ... HAVING count(*) > 1, far lighter than count(DISTINCT) at 20M rows.
validate succeeds whenever it could check; the verdict is data that dq_gate acts on.
"""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path
from typing import Any

from batchops.artifacts import read_json, write_json_atomic, write_text_atomic
from batchops.config import EntitySpec, ProviderConfig
from batchops.delivery_calendar import missing_drops
from batchops.duck import scratch_connection
from batchops.errors import InputDataError
from batchops.runcontext import RunContext
from batchops.sqlsafe import quote_identifier
from batchops.storage.versions import loaded_dates, table_columns
from batchops.storage.warehouse import open_warehouse, warehouse_path


def _check(entity: str, column: str | None, check: str, metric: str, threshold: Any, observed: Any,
           passed: bool, detail: str = "", warn_only: bool = False) -> dict[str, Any]:
    """One row of dq_report.json; a warn_only check that does not pass is reported as a warning, not a failure."""
    warning = warn_only and not passed
    return {"entity": entity, "column": column, "check": check, "metric": metric, "threshold": threshold,
            "observed": observed, "passed": bool(passed or warning), "warning": warning, "detail": detail}


def _invalid_condition(name: str, spec) -> str | None:
    """SQL condition (over a non-null value) for values the config does not allow."""
    column = quote_identifier(name)
    conditions = []
    if spec.type == "float":
        conditions.append(f"NOT isfinite({column})")
    if spec.min is not None:
        conditions.append(f"{column} < {float(spec.min)!r}")
    if spec.max is not None:
        conditions.append(f"{column} > {float(spec.max)!r}")
    if spec.allowed_values is not None:
        conditions.append(f"NOT list_contains($allowed_{name}, {column})")
    if spec.pattern is not None and spec.type == "string":  # typed columns lost their text; OCR checks those
        conditions.append(f"NOT regexp_full_match({column}, $pattern_{name})")
    return " OR ".join(conditions) or None


def entity_metrics(connection, staging: Path, spec: EntitySpec, snapshot_date: date,
                   checked_against_customers: bool = False) -> dict[str, Any]:
    """Row count, per-column null, invalid and future-date counts, and primary-key duplicates/nulls in one pass;
    then keys that differ only in letter case."""
    null_key = " OR ".join(f"{quote_identifier(k)} IS NULL" for k in spec.primary_key) or "false"
    selects = ["count(*) AS row_count", f"count(*) FILTER (WHERE {null_key}) AS null_keys"]
    parameters: dict[str, Any] = {"staging": str(staging)}
    for name, column in spec.columns.items():
        quoted = quote_identifier(name)
        selects.append(f"count(*) FILTER (WHERE {quoted} IS NULL) AS {quote_identifier('nulls_' + name)}")
        if column.type == "date":
            parameters["snapshot_date"] = snapshot_date
            selects += [f"count(*) FILTER (WHERE {quoted} > $snapshot_date) AS {quote_identifier('future_' + name)}",
                        f"max({quoted}) AS {quote_identifier('latest_' + name)}"]
        condition = _invalid_condition(name, column)
        if condition:
            selects.append(f"count(*) FILTER (WHERE {quoted} IS NOT NULL AND ({condition})) "
                           f"AS {quote_identifier('invalid_' + name)}")
        if column.allowed_values is not None:
            parameters[f"allowed_{name}"] = column.allowed_values
        if column.pattern is not None and column.type == "string":
            parameters[f"pattern_{name}"] = column.pattern
    row = connection.execute(f"SELECT {', '.join(selects)} FROM read_parquet($staging)", parameters)
    metrics = dict(zip([d[0] for d in row.description], row.fetchone(), strict=True))
    identities = identity_columns(spec, checked_against_customers)
    single_key = spec.primary_key[0] if len(spec.primary_key) == 1 and spec.primary_key[0] in identities else None
    metrics["near_duplicates"] = {name: near_duplicate_keys(connection, staging, name)
                                  for name in identities if name != single_key}
    if single_key is not None:  # one pass over the key finds both (a 20M-row key: one GROUP BY, not two)
        metrics["near_duplicates"][single_key], duplicate = key_groups(connection, staging, single_key)
        metrics["duplicate_keys"], metrics["rows_with_duplicate_keys"], metrics["duplicate_key_examples"] = duplicate
        return metrics
    if not spec.primary_key:  # no natural key declared: nothing to be unique
        metrics["duplicate_keys"], metrics["rows_with_duplicate_keys"], metrics["duplicate_key_examples"] = 0, 0, []
        return metrics
    keys = ", ".join(quote_identifier(k) for k in spec.primary_key)
    duplicate = connection.execute(
        f"SELECT count(*), coalesce(sum(n), 0), list(key_text ORDER BY key_text)[1:5] FROM ("
        f"  SELECT count(*) AS n, concat_ws('|', {keys}) AS key_text FROM read_parquet($staging)"
        f"  WHERE NOT ({null_key}) GROUP BY {keys} HAVING count(*) > 1)", {"staging": str(staging)}).fetchone()
    metrics["duplicate_keys"], metrics["rows_with_duplicate_keys"], metrics["duplicate_key_examples"] = duplicate
    return metrics


def identity_columns(spec: EntitySpec, checked_against_customers: bool = False) -> list[str]:
    """String columns whose values name one thing each: a one-column primary key, and customer_id. Another
    entity's customer_id is left out when the orphan check compares it with the customer file exactly: a
    spelling the customer file does not have is an orphan there."""
    single_key = spec.primary_key if len(spec.primary_key) == 1 else []
    names = [*single_key] + ([] if checked_against_customers else ["customer_id"])
    return [name for name in dict.fromkeys(names) if name in spec.columns and spec.columns[name].type == "string"]


def near_duplicate_keys(connection, staging: Path, column: str) -> dict[str, Any]:
    """Values of `column` that differ only in letter case or surrounding blanks (what the column's normalisation
    at ingest left apart): how many such groups, and a few of them (the first and last spelling of each). A group
    has several spellings exactly when its min and max differ: cheap aggregates, where a list of the distinct
    spellings per group took 17.5 s over 20M transaction ids."""
    quoted = quote_identifier(column)
    groups, examples = connection.execute(
        f"SELECT count(*), list([first_spelling, last_spelling] ORDER BY first_spelling)[1:3] FROM ("
        f"SELECT min({quoted}) AS first_spelling, max({quoted}) AS last_spelling FROM read_parquet($staging) "
        f"WHERE {quoted} IS NOT NULL GROUP BY lower(trim({quoted})) HAVING min({quoted}) <> max({quoted}))",
        {"staging": str(staging)}).fetchone()
    return {"groups": groups, "examples": examples or []}


def key_groups(connection, staging: Path, column: str) -> tuple[dict[str, Any], tuple[int, int, list[str]]]:
    """near_duplicate_keys of a one-column key, and its exact duplicates (keys, rows, examples), from one
    GROUP BY over the folded spelling: a group of one spelling seen n > 1 times is a duplicate key; only the
    rare groups of several spellings are counted again, spelling by spelling."""
    quoted = quote_identifier(column)
    groups = connection.execute(
        f"SELECT lower(trim({quoted})) AS folded, min({quoted}), max({quoted}), count(*) FROM read_parquet($staging) "
        f"WHERE {quoted} IS NOT NULL GROUP BY folded HAVING count(*) > 1", {"staging": str(staging)}).fetchall()
    spelled_apart = sorted([low, high] for _, low, high, _ in groups if low != high)
    duplicates = {low: count for _, low, high, count in groups if low == high}
    if spelled_apart:
        folded = [fold for fold, low, high, _ in groups if low != high]
        duplicates.update(connection.execute(
            f"SELECT {quoted}, count(*) FROM read_parquet($staging) WHERE lower(trim({quoted})) IN "
            f"(SELECT unnest($folded)) GROUP BY {quoted} HAVING count(*) > 1",
            {"staging": str(staging), "folded": folded}).fetchall())
    near = {"groups": len(spelled_apart), "examples": spelled_apart[:3]}
    return near, (len(duplicates), sum(duplicates.values()), sorted(duplicates)[:5])


NUMBER_HINT = (" If the file writes numbers with separators, a currency or another sign style (1,234.56, $12, "
               "(5.00), 731.53-), declare them with number: on the column")


def _rejects_detail(ingest_result: dict[str, Any]) -> str:
    """Where the unparsable rows are, so the person fixing the file knows which line to look at."""
    if not ingest_result["rejected_rows"]:
        return ""
    first = ingest_result["reject_samples"][0]
    where = f"line {first['line']}" + (f", column {first['column']}" if first["column"] else "")
    by_kind = "; ".join(f"{k}: {v}" for k, v in ingest_result["rejects_by_column"].items())
    numeric = any(re.search(r"(?i)could not convert.*(DOUBLE|BIGINT|INTEGER|DECIMAL)", str(s.get("message", "")))
                  for s in ingest_result["reject_samples"])
    return (f"{ingest_result['rejected_rows']} row(s) of {ingest_result['file']} could not be parsed ({by_kind}); "
            f"first at {where}: {first['error_type']} in {first['raw'][:60]!r}. Fix the file, or raise "
            "dq.max_invalid to accept them." + (NUMBER_HINT if numeric else ""))


# A day's drop of an incremental entity can be a few dozen rows, where one missing value is already several
# percent: its missing share is a warning, not a failure, while it is no less likely than this by chance for a
# column whose true share is the threshold (a binomial tail: at 5%, 2 of 35 rows or more 0.53, 7 of 35 0.0015,
# 8 of 35 0.0003).
CHANCE_OF_A_SMALL_DROP = 0.001


def chance_of_at_least(count: int, rows: int, share: float) -> float:
    """P(X >= count) for X ~ Binomial(rows, share): how often `rows` rows hold `count` or more missing values
    when each is missing with probability `share`."""
    if count <= 0:
        return 1.0
    if share <= 0.0:
        return 0.0
    if share >= 1.0:
        return 1.0
    log_share, log_rest, log_rows_factorial = math.log(share), math.log1p(-share), math.lgamma(rows + 1)
    total = 0.0
    for k in range(count, rows + 1):
        term = math.exp(log_rows_factorial - math.lgamma(k + 1) - math.lgamma(rows - k + 1)
                        + k * log_share + (rows - k) * log_rest)
        total += term
        # past the mode the terms only shrink; one that underflowed to 0 (far in the tail) ends it too
        if k > rows * share and (term == 0.0 or term < total * 1e-12):
            break
    return min(total, 1.0)


def missingness_check(provider: ProviderConfig, entity: str, column: str, missing: int, rows: int) -> dict[str, Any]:
    threshold = provider.missing_threshold(entity, column)
    share = missing / rows if rows else 0.0
    if share <= threshold or provider.entities[entity].delivery != "incremental":
        return _check(entity, column, "missingness", "missing_fraction", threshold, round(share, 6), share <= threshold)
    chance = chance_of_at_least(missing, rows, threshold)
    if chance >= CHANCE_OF_A_SMALL_DROP:
        return _check(entity, column, "missingness", "missing_fraction", threshold, round(share, 6), False,
                      f"{missing} of the drop's {rows} rows: a day's drop this small holds as many by chance "
                      f"{chance:.1%} of the time when the column's share is {threshold}; a warning (delivery: "
                      "incremental), a failure once it is less likely than 0.1%", warn_only=True)
    return _check(entity, column, "missingness", "missing_fraction", threshold, round(share, 6), False,
                  f"{missing} of the drop's {rows} rows: less likely than 0.1% by chance when the column's share is "
                  f"{threshold}")


def _too_few_rows_hint(provider: ProviderConfig, entity: str, rows: int, rejected: int) -> str:
    """What to do about a drop with fewer rows than min_rows; a quiet day is normal for some incremental feeds."""
    if rejected:
        return f"{rejected} row(s) of the {entity} file could not be parsed: see parse_errors for where and why"
    if provider.entities[entity].delivery == "incremental":
        return (f"the {entity} drop holds {rows} new row(s). If days without new {entity} rows are normal for this "
                f"provider, set entities.{entity}.min_rows: 0 in its config and clear this run's tasks; otherwise ask "
                "the provider for the day's rows. Until this drop is loaded, later drops are blocked as a delivery "
                "gap (dq.delivery_gaps).")
    return (f"the {entity} file is a full extract (delivery: snapshot) and holds {rows} row(s): an extract cut short "
            "or an export that failed upstream. Ask the provider for the whole file.")


def entity_checks(provider: ProviderConfig, entity: str, metrics: dict[str, Any],
                  ingest_result: dict[str, Any], snapshot_date: date | None = None) -> list[dict[str, Any]]:
    spec = provider.entities[entity]
    rows = metrics["row_count"]
    min_rows = spec.min_rows if spec.min_rows is not None else provider.dq.min_rows
    max_invalid = provider.dq.max_invalid
    checks = [_check(entity, None, "row_count", "rows", f">= {min_rows}", rows, rows >= min_rows,
                     "" if rows >= min_rows else _too_few_rows_hint(provider, entity, rows, ingest_result["rejected_rows"]))]
    checks += key_text_checks(entity, ingest_result.get("key_text_changes") or {})
    checks += number_format_checks(provider, entity, ingest_result.get("number_format_rejects") or {}, rows)
    missing_columns = set(ingest_result["missing_columns"])
    for name, column in spec.columns.items():
        if name in missing_columns:
            checks.append(_check(entity, name, "required_column", "present", "present" if column.required else
                                 "optional", "absent", not column.required,
                                 f"source column {column.source!r} is not in the file"))
            continue
        if column.required:
            checks.append(_check(entity, name, "required_column", "present", "present", "present", True))
    total = rows + ingest_result["rejected_rows"]
    rejected_share = ingest_result["rejected_rows"] / total if total else 0.0
    checks.append(_check(entity, None, "parse_errors", "rejected_row_fraction", max_invalid, round(rejected_share, 6),
                         rejected_share <= max_invalid, _rejects_detail(ingest_result)))
    for name, column in spec.columns.items():
        if name in missing_columns:
            continue
        checks.append(missingness_check(provider, entity, name, metrics[f"nulls_{name}"], rows))
        if f"invalid_{name}" in metrics:
            invalid_share = metrics[f"invalid_{name}"] / rows if rows else 0.0
            rule = [f"allowed {column.allowed_values}" if column.allowed_values else "",
                    f"min {column.min}" if column.min is not None else "",
                    f"max {column.max}" if column.max is not None else "",
                    f"pattern {column.pattern}" if column.pattern else "",
                    "finite" if column.type == "float" else ""]
            checks.append(_check(entity, name, "valid_values", "invalid_fraction", max_invalid,
                                 round(invalid_share, 6), invalid_share <= max_invalid,
                                 ", ".join(r for r in rule if r)))
        if f"future_{name}" in metrics:
            future = metrics[f"future_{name}"]
            share = future / rows if rows else 0.0
            checks.append(_check(entity, name, "future_dates", "future_fraction", provider.dq.max_future_dates,
                                 round(share, 6), share <= provider.dq.max_future_dates,
                                 f"{future} value(s) after the snapshot date {snapshot_date}, the latest "
                                 f"{metrics[f'latest_{name}']}; a date from the future is a typo or a placeholder "
                                 "(9999-12-31): fix the file, or raise dq.max_future_dates" if future else ""))
    for name, found in metrics.get("near_duplicates", {}).items():
        shown = "; ".join(" / ".join(map(str, group)) for group in found["examples"])
        checks.append(_check(entity, name, "near_duplicate_keys", "groups_differing_only_in_case", 0,
                             found["groups"], found["groups"] == 0,
                             f"{found['groups']} id(s) appear in several spellings that differ only in letter case or "
                             f"blanks, e.g. {shown}: they are kept as different ids. If they are one, declare normalize: [trim, upper] (or lower) on the "
                             "column; else set dq.near_duplicate_keys: warn" if found["groups"] else "",
                             warn_only=provider.dq.near_duplicate_keys == "warn"))
    ocr = ingest_result.get("ocr")
    if ocr:
        checks += ocr_checks(provider, entity, ocr)
    if not spec.primary_key:
        return checks
    key = "+".join(spec.primary_key)
    checks.append(_check(entity, key, "unique_key", "duplicate_keys", 0, metrics["duplicate_keys"],
                         metrics["duplicate_keys"] == 0,
                         f"examples: {metrics['duplicate_key_examples']}" if metrics["duplicate_keys"] else ""))
    checks.append(_check(entity, key, "key_not_null", "null_keys", 0, metrics["null_keys"], metrics["null_keys"] == 0))
    return checks


def number_format_checks(provider: ProviderConfig, entity: str, rejects: dict[str, Any],
                         rows: int) -> list[dict[str, Any]]:
    """Values of a column with a declared number format that the format does not read: counted against
    dq.max_invalid, with examples and why (they are stored as missing)."""
    checks = []
    for name, found in rejects.items():
        share = found["invalid"] / rows if rows else 0.0
        number = provider.entities[entity].columns[name].number
        checks.append(_check(entity, name, "number_format", "unreadable_fraction", provider.dq.max_invalid,
                             round(share, 6), share <= provider.dq.max_invalid,
                             f"{found['invalid']} value(s) do not read as number {number.model_dump()} (e.g. "
                             f"{', '.join(map(repr, found['examples']))}: {found['why']}); fix the file or the "
                             "column's number format" if found["invalid"] else ""))
    return checks


def key_text_checks(entity: str, changes: dict[str, Any]) -> list[dict[str, Any]]:
    """A key whose text changes when read as its declared number type ('00042' -> 42) fails: published as text
    it would name ids that are not in the drop (and two ids would become one)."""
    checks = []
    for name, found in changes.items():
        example = "; ".join(f"{raw!r} is read as {read_as}" for raw, read_as in found["examples"])
        checks.append(_check(entity, name, "key_text_preserved", "values_changed_by_type", 0, found["changed"],
                             found["changed"] == 0,
                             f"{found['changed']} of {found['values']} values of {name} change when read as "
                             f"{found['type']} (e.g. {example}), so they would be stored and published as other ids; "
                             f"declare {name} as type: string" if found["changed"] else ""))
    return checks


def orphans_checked(provider: ProviderConfig, entity: str, missing: dict[str, set[str]]) -> bool:
    """Whether orphan_checks compares this entity's customer_id with the customer file."""
    return (entity != "customers" and "customers" in provider.entities and "customer_id" in provider.entities[entity].columns
            and "customer_id" not in missing.get("customers", set()) | missing.get(entity, set()))


def orphan_checks(connection, ctx: RunContext, missing_columns: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Rows of an entity whose customer_id is not in the drop's customer file: counted against
    dq.max_orphan_rows (they are loaded, but no customer's features, labels or scores include them)."""
    provider = ctx.provider
    if "customers" not in provider.entities or "customer_id" in missing_columns.get("customers", set()):
        return []
    customers = str(ctx.staging_dir / "customers.parquet")
    checks = []
    for entity, spec in provider.entities.items():
        if entity == "customers" or "customer_id" not in spec.columns or "customer_id" in missing_columns[entity]:
            continue
        staging = str(ctx.staging_dir / f"{entity}.parquet")
        orphan_sql = ("FROM read_parquet($child) AS child WHERE child.customer_id IS NOT NULL AND NOT EXISTS ("
                      "SELECT 1 FROM read_parquet($customers) AS known WHERE known.customer_id = child.customer_id)")
        parameters = {"child": staging, "customers": customers}
        orphans, rows = connection.execute(f"SELECT count(*), (SELECT count(*) FROM read_parquet($child)) "
                                           f"{orphan_sql}", parameters).fetchone()
        examples = [row[0] for row in connection.execute(
            f"SELECT DISTINCT child.customer_id {orphan_sql} ORDER BY 1 LIMIT 3", parameters).fetchall()] \
            if orphans else []
        share = orphans / rows if rows else 0.0
        checks.append(_check(entity, "customer_id", "orphan_rows", "orphan_fraction", provider.dq.max_orphan_rows,
                             round(share, 6), share <= provider.dq.max_orphan_rows,
                             f"{orphans} of {rows} {entity} rows name a customer_id that "
                             f"{provider.entities['customers'].file} does not have (e.g. {', '.join(examples)}): "
                             "they would be loaded but be in no customer's features, labels or scores. Ask for the "
                             "missing customers, or raise dq.max_orphan_rows to accept them" if orphans else ""))
    return checks


def delivery_checks(ctx: RunContext, rows: dict[str, int]) -> list[dict[str, Any]]:
    """What the drop is, against the drops stored before it. An incremental entity's drop whose previous due
    drop (by the schedule) was never loaded: the days in between are missing from its history. A full extract
    holding a small share of the previous drop's rows: an increment declared as a full extract, or a cut one.
    Either way every feature built on it would be wrong without a word."""
    entities = ctx.provider.entities
    incremental = [entity for entity, spec in entities.items() if spec.delivery == "incremental"]
    share = ctx.provider.dq.min_snapshot_share
    full = [entity for entity, spec in entities.items() if spec.delivery == "snapshot" and share > 0
            and rows.get(entity)]
    if not (incremental or full) or not warehouse_path(ctx.settings, ctx.provider.provider_id).exists():
        return []  # the first drop holds the history
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        loaded = {entity: loaded_dates(warehouse, entity) for entity in incremental}
        previous = {entity: previous_drop(warehouse, entity, ctx.snapshot_date) for entity in full}
    checks = []
    for entity, (when, stored_rows) in ((e, p) for e, p in previous.items() if p is not None):
        observed = rows[entity] / stored_rows if stored_rows else 1.0
        checks.append(_check(entity, None, "full_extract_share", "rows_vs_previous_drop", share, round(observed, 6),
                             observed >= share,
                             f"this full extract holds {rows[entity]:,} rows, the drop of {when} held {stored_rows:,}: "
                             f"stored as a full extract, the {stored_rows - rows[entity]:,} rows missing from it would "
                             "leave the history every feature reads. If the provider sends only the rows new since "
                             f"its last drop, declare delivery: incremental on {entity} (docs/configs.md); if the "
                             "extract was cut short, ask for it again; if the history really shrank, lower "
                             "dq.min_snapshot_share" if observed < share else ""))
    for entity in incremental:
        missing = missing_drops(ctx.provider.schedule, ctx.snapshot_date, loaded[entity])
        shown = ", ".join(d.isoformat() for d in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10
                                                                  else "")
        checks.append(_check(entity, None, "delivery_gaps", "missing_drops", 0, len(missing), not missing,
                             f"the drop(s) of {shown} were never loaded (schedule {ctx.provider.schedule}): their rows "
                             f"are missing from {entity}'s history before {ctx.snapshot_date}. Load them (a run for "
                             "each date; a late drop is stored in its place), or set dq.delivery_gaps: warn"
                             if missing else "", warn_only=ctx.provider.dq.delivery_gaps == "warn"))
    return checks


def previous_drop(warehouse, entity: str, snapshot: date) -> tuple[date, int] | None:
    """(date, rows) of the entity's latest drop stored before `snapshot` (load_audit), None for the first."""
    if table_columns(warehouse, "load_audit") is None:
        return None
    return warehouse.execute("SELECT snapshot_date, row_count FROM load_audit WHERE entity = $e AND snapshot_date < "
                             "$d ORDER BY snapshot_date DESC LIMIT 1", {"e": entity, "d": snapshot}).fetchone()


def ocr_checks(provider, entity: str, ocr: dict[str, Any]) -> list[dict[str, Any]]:
    """The scan's own quality, counted apart: invalid cells (failed their column's rule) against
    dq.max_invalid, low-confidence or doubtful ones against dq.max_ocr_flagged, and pages whose rows
    were not all read (text but no rows, or a gap in the row spacing)."""
    cells = ocr["cells"]
    invalid = ocr["invalid_cells"]
    low = ocr.get("low_confidence_cells", ocr["flagged_cells"] - invalid)
    see = f"rows listed below and in {ocr['report']}"
    checks = [
        _check(entity, None, "ocr_quality", "invalid_cell_fraction", provider.dq.max_invalid,
               round(invalid / cells, 6) if cells else 1.0, bool(cells) and invalid / cells <= provider.dq.max_invalid,
               f"{invalid} of {cells} cells invalid; {see}"),
        _check(entity, None, "ocr_quality", "low_confidence_cell_fraction", provider.dq.max_ocr_flagged,
               round(low / cells, 6) if cells else 1.0, bool(cells) and low / cells <= provider.dq.max_ocr_flagged,
               f"{low} of {cells} cells low-confidence or doubtful repairs; {see}"),
    ]
    unread = {str(p): "text but no table rows" for p in ocr.get("pages_without_rows", [])}
    unread.update({str(p): "; ".join(g) for p, g in (ocr.get("row_gaps") or {}).items()})
    checks.append(_check(entity, None, "ocr_pages", "pages_with_unread_rows", 0, len(unread), not unread,
                         "; ".join(f"page {p}: {why}" for p, why in unread.items())
                         or f"rows per page {ocr.get('rows_per_page', {})}"))
    failures = ocr.get("reconciliation_failures") or []
    checks.append(_check(entity, None, "ocr_reconciliation", "figures_not_adding_up", 0, len(failures), not failures,
                         "; ".join(failures[:3]) or "every printed subtotal, total and balance adds up (or none is "
                                                    "printed)"))
    return checks


def ocr_flag_lines(run_dir, provider) -> list[str]:
    """Markdown rows for every flagged OCR cell of the run (from ocr_report_<entity>.json)."""
    lines = []
    for entity in provider.entities:
        path = run_dir / f"ocr_report_{entity}.json"
        if not path.exists():
            continue
        flagged = read_json(path).get("flagged_cells", [])
        if not flagged:
            continue
        lines += ["", f"## OCR cells to check: {entity} ({len(flagged)})", "",
                  "| page | row | column | flag | read | value | why |", "|---|---|---|---|---|---|---|"]
        for cell in flagged:
            values = [cell["page"], cell["row"], cell["column"], cell["kind"], cell["raw"], cell["value"],
                      cell["problem"] or ""]
            lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [f"# Data quality: {verdict}", "",
             f"Provider **{report['provider']}**, snapshot **{report['snapshot_date']}**: "
             f"{report['failed_checks']} of {len(report['checks'])} checks failed.", "",
             "| result | entity | column | check | metric | threshold | observed | detail |",
             "|---|---|---|---|---|---|---|---|"]
    ordered = sorted(report["checks"], key=lambda c: (c["passed"], not c.get("warning")))  # failed, warned first
    for c in ordered:
        cells = ["**WARN**" if c.get("warning") else "PASS" if c["passed"] else "**FAIL**", c["entity"], c["column"] or "", c["check"], c["metric"],
                 str(c["threshold"]), str(c["observed"]), str(c["detail"]).replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def validate(ctx: RunContext) -> dict[str, Any]:
    """Run every check; writes dq_report.json and dq_report.md; returns the report."""
    log = ctx.logger("validate")
    ingest_report_path = ctx.run_dir / "ingest_report.json"
    if not ingest_report_path.exists():
        raise InputDataError(f"{ingest_report_path} is missing; clear and re-run the ingest task first")
    ingest_report = read_json(ingest_report_path)
    checks: list[dict[str, Any]] = []
    missing = {entity: set(result["missing_columns"]) for entity, result in ingest_report["entities"].items()}
    connection = scratch_connection(ctx.settings)
    try:
        for entity, spec in ctx.provider.entities.items():
            with log.timed("validate_entity", entity=entity):
                metrics = entity_metrics(connection, ctx.staging_dir / f"{entity}.parquet", spec, ctx.snapshot_date,
                                         orphans_checked(ctx.provider, entity, missing))
                checks += entity_checks(ctx.provider, entity, metrics, ingest_report["entities"][entity],
                                        ctx.snapshot_date)
        with log.timed("validate_relationships"):
            checks += orphan_checks(connection, ctx, missing)
        checks += delivery_checks(ctx, {e: r["rows"] for e, r in ingest_report["entities"].items()})
    finally:
        connection.close()
    failed = [c for c in checks if not c["passed"]]
    report = {"provider": ctx.provider.provider_id, "snapshot_date": ctx.snapshot_date.isoformat(),
              "passed": not failed, "failed_checks": len(failed),
              "warnings": sum(1 for c in checks if c.get("warning")), "checks": checks,
              "rows": {e: r["rows"] for e, r in ingest_report["entities"].items()}}
    write_json_atomic(ctx.run_dir / "dq_report.json", report)
    write_text_atomic(ctx.run_dir / "dq_report.md",
                      render_markdown(report) + "\n".join(ocr_flag_lines(ctx.run_dir, ctx.provider)) + "\n")
    log.event("dq_verdict", level="INFO" if not failed else "WARNING", passed=not failed, failed_checks=len(failed),
              failed=[f"{c['entity']}.{c['column']}:{c['check']}" for c in failed])
    return report


def dq_verdict(ctx: RunContext) -> tuple[bool, str]:
    """(passed, reason) from dq_report.json, for the gate and the summary."""
    report = read_json(ctx.run_dir / "dq_report.json")
    failed = [c for c in report["checks"] if not c["passed"]]
    if not failed:
        return True, f"all {len(report['checks'])} checks passed"
    reasons = "; ".join(f"{c['entity']}.{c['column'] or '*'} {c['check']}: observed {c['observed']} vs "
                        f"threshold {c['threshold']}" + (f" ({c['detail']})" if c["detail"] else "")
                        for c in failed[:5])
    more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
    return False, f"{len(failed)} DQ check(s) failed: {reasons}{more}"
