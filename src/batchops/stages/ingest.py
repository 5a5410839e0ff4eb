"""ingest: read each entity's landing file with DuckDB, typed by the config, into staging Parquet.

Types are explicit (never sniffed). Rows whose values do not parse are not silently dropped: DuckDB's
store_rejects records them (line, column, raw text) and validate counts them against max_invalid.
"""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from batchops.artifacts import sha256_of_file, write_json_atomic, write_text_atomic, write_with
from batchops.config import EntitySpec, key_columns, normalization
from batchops.duck import scratch_connection
from batchops.errors import ArtifactWriteError, InputDataError, LandingNotReadyError, is_duckdb_error
from batchops.numbers import NumberStyle, number_sql, parse_number
from batchops.runcontext import RunContext
from batchops.sqlsafe import quote_identifier, quote_source_column, string_literal

DUCKDB_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "boolean": "BOOLEAN"}
REJECT_SAMPLES = 20
# DuckDB reports a failed write inside its own error text; these are not the input's fault.
WRITE_FAILURES = {"No space left": "the disk is full; free space",
                  "Permission denied": "the folder is not writable by this user; fix its permissions",
                  "Read-only file system": "the file system is mounted read-only; make it writable"}


def landing_file(ctx: RunContext, entity: str, spec: EntitySpec) -> Path:
    """The entity's file for this snapshot, refusing anything that resolves outside the data folder."""
    path = ctx.landing_dir / spec.file
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except FileNotFoundError:
            raise InputDataError(f"{entity}: landing file {path} is a symbolic link to {os.readlink(path)}, which "
                                 "does not exist; deliver the file itself there") from None
        except (RuntimeError, OSError) as exc:  # RuntimeError: Python 3.11's report of a symlink loop
            raise InputDataError(f"{entity}: landing file {path} is a symbolic link that loops ({exc}); replace "
                                 "it with the file itself") from None
    if not path.exists():
        raise InputDataError(
            f"{entity}: landing file {path} does not exist. Expected the provider's {spec.file} for snapshot "
            f"{ctx.snapshot_date} there (landing_path in the provider config); deliver it or pick another date."
        )
    resolved = path.resolve()
    if not resolved.is_relative_to(ctx.settings.data_dir.resolve()):
        raise InputDataError(f"{entity}: {path} resolves to {resolved}, outside BATCHOPS_DATA_DIR; refusing it")
    if not resolved.is_file():
        raise InputDataError(f"{entity}: {path} is not a regular file")
    return resolved


HEADER_READ_LIMIT = 1 << 20
# Placeholder for a header cell with no name (a trailing delimiter on every line, as spreadsheets export):
# the column is read, reported as unmapped, and ignored.
UNNAMED_COLUMN = "_unnamed_column_{position}"


def _header_line(path: Path) -> str:
    """The first line, decoded; refuses the encodings and line ends that would misread the header."""
    with path.open("rb") as handle:
        first_bytes = handle.readline(HEADER_READ_LIMIT)  # bytes: a bad byte further down is the reader's business
    if first_bytes.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputDataError(f"{path}: the file is UTF-16 encoded; re-export it as UTF-8")
    if b"\x00" in first_bytes:
        position = first_bytes.index(b"\x00")
        raise InputDataError(f"{path}: line 1 (the header) has a NUL byte at byte {position + 1}, after "
                             f"{first_bytes[:position][-40:].decode('utf-8', 'replace')!r}; the file is binary or "
                             "damaged. Re-export it as plain UTF-8 text")
    try:
        first_line = first_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: the header line is not UTF-8 ({exc.reason} at byte {exc.start}); "
                             "re-export the file as UTF-8") from exc
    if "\r" in first_line.rstrip("\r\n"):
        raise InputDataError(f"{path}: lines end with a carriage return only (CR, an old Mac export), so the whole "
                             "file reads as one line; re-export it with LF or CRLF line ends")
    if len(first_bytes) >= HEADER_READ_LIMIT and not first_line.endswith("\n"):
        raise InputDataError(f"{path}: line 1 (the header) is longer than {HEADER_READ_LIMIT:,} bytes; "
                             "expected a header line of column names. Check the file's line ends and format")
    return first_line


def read_header(path: Path, spec: EntitySpec) -> list[str]:
    """Source column names from the first line, with the configured delimiter and quote."""
    first_line = _header_line(path)
    if not first_line.strip():
        raise InputDataError(f"{path}: the file is empty; expected a header line with columns "
                             f"{[c.source for c in spec.columns.values()]}")
    try:
        header = next(csv.reader([first_line.rstrip("\r\n")], delimiter=spec.csv.delimiter,
                                 quotechar=spec.csv.quote))
    except csv.Error as exc:
        raise InputDataError(f"{path}: line 1 (the header) cannot be read as column names ({exc}); a header "
                             "name that long or broken means the file is not in the configured layout "
                             f"(delimiter {spec.csv.delimiter!r}, quote {spec.csv.quote!r}). Fix the file") from exc
    header = [name.strip() for name in header]
    if len(header) == 1:
        found = [d for d in (",", ";", "\t", "|") if d != spec.csv.delimiter and d in first_line]
        if found:
            raise InputDataError(f"{path}: header has one column but contains {found[0]!r}; the provider config "
                                 f"says delimiter {spec.csv.delimiter!r}. Fix csv.delimiter or the file.")
    header = [name or UNNAMED_COLUMN.format(position=position) for position, name in enumerate(header, 1)]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputDataError(f"{path}: header repeats column(s) {duplicates}; each column name must be unique")
    by_case = {}
    for name in header:
        by_case.setdefault(name.lower(), []).append(name)
    alike = [names for names in by_case.values() if len(names) > 1]
    if alike:
        raise InputDataError(f"{path}: header has columns that differ only in case: "
                             f"{'; '.join(' and '.join(map(repr, names)) for names in alike)}. Column names are "
                             "matched without regard to case; rename or drop one of each and re-deliver")
    return header


def wait_until_settled(path: Path, settle_seconds: float, ready_marker: str | None) -> os.stat_result:
    """Refuse a file that is still being uploaded: one modified within settle_seconds is watched that
    long and must not change. Raises LandingNotReadyError (retryable) otherwise."""
    hint = (f"the provider writes {ready_marker} when an upload is complete" if ready_marker else
            "if the provider's uploads are not atomic, ask them to write a marker file and set ready_marker")
    first = path.stat()
    age = time.time() - first.st_mtime
    if age < settle_seconds:
        time.sleep(settle_seconds - max(age, 0.0))
        second = path.stat()
        if (second.st_size, second.st_mtime_ns) != (first.st_size, first.st_mtime_ns):
            raise LandingNotReadyError(
                f"{path} is still being written: {first.st_size} -> {second.st_size} bytes within "
                f"{settle_seconds:g}s. The task retries later; {hint}.")
        return second
    return first


def assert_unchanged(path: Path, before: os.stat_result) -> None:
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise LandingNotReadyError(f"{path} changed while it was read ({before.st_size} -> {after.st_size} bytes); "
                                   "nothing was staged from it. The task retries later.")


def check_ready_marker(ctx: RunContext) -> None:
    marker = ctx.provider.ready_marker
    if marker and not (ctx.landing_dir / marker).is_file():
        raise LandingNotReadyError(
            f"{ctx.landing_dir / marker} is not there yet: provider {ctx.provider.provider_id} writes it when the "
            f"upload for {ctx.snapshot_date} is complete (ready_marker). The task retries later.")


def mixes_line_endings(path: Path) -> bool:
    """True when the file has both CRLF and bare LF line ends (e.g. two exports concatenated)."""
    crlf = lf = 0
    ended_with_cr = False
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            lf += block.count(b"\n")
            crlf += block.count(b"\r\n") + (ended_with_cr and block.startswith(b"\n"))
            ended_with_cr = block.endswith(b"\r")
    return 0 < crlf < lf


BLANKS = " \t\r\n\u00a0"  # what `trim` removes: spaces, tabs, line ends and no-break spaces


def normalized(expression: str, column) -> str:
    """The column's value as stored: trimmed (an all-blank value is missing) and case-folded as configured."""
    for step in normalization(column):
        if step == "trim":
            expression = f"nullif(trim({expression}, {string_literal(BLANKS)}), '')"
        else:
            expression = f"{step}({expression})"
    return expression


def key_text_changes(connection, spec: EntitySpec, source: Path, header: list[str]) -> dict[str, Any]:
    """Per key column declared integer or float: how many values change their text when read as that type
    ('00042' is read as 42), with examples. A key joins and is published as text, so such a cast would publish
    ids that are not in the drop. One lenient read of the file's text, only for providers with such keys."""
    numeric = [(name, spec.columns[name]) for name in key_columns(spec)
               if spec.columns[name].type in ("integer", "float") and spec.columns[name].source in header]
    if not numeric:
        return {}
    all_text = ", ".join(f"{string_literal(name)}: 'VARCHAR'" for name in header)
    selects = []
    for _, column in numeric:
        raw = quote_source_column(column.source)
        read_as = f"CAST(TRY_CAST({raw} AS {DUCKDB_TYPES[column.type]}) AS VARCHAR)"
        changed = f"{read_as} IS NOT NULL AND {read_as} <> trim({raw}, {string_literal(BLANKS)})"
        selects += [f"count(*) FILTER (WHERE {changed})", f"count({raw})",
                    f"list([{raw}, {read_as}]) FILTER (WHERE {changed})[1:3]"]
    row = connection.execute(
        f"SELECT {', '.join(selects)} FROM read_csv($path, delim = $delim, quote = $quote, escape = $quote, "
        f"header = true, auto_detect = false, columns = {{{all_text}}}, ignore_errors = true, strict_mode = false)",
        {"path": str(source), "delim": spec.csv.delimiter, "quote": spec.csv.quote}).fetchone()
    return {name: {"type": column.type, "changed": row[3 * i], "values": row[3 * i + 1],
                   "examples": [list(pair) for pair in row[3 * i + 2] or []]}
            for i, (name, column) in enumerate(numeric)}


def number_format_rejects(connection, spec: EntitySpec, source: Path, header: list[str]) -> dict[str, Any]:
    """Per column with a declared number format: the values it does not read, with examples (one lenient read
    of those columns' text, only for providers that declare formats)."""
    declared = [(name, c) for name, c in spec.columns.items() if c.number and c.source in header]
    if not declared:
        return {}
    all_text = ", ".join(f"{string_literal(name)}: 'VARCHAR'" for name in header)
    selects = []
    for _, column in declared:
        raw = quote_source_column(column.source)
        invalid = number_sql(raw, NumberStyle.of(column), DUCKDB_TYPES[column.type])[1]
        selects += [f"count(*) FILTER (WHERE {invalid})", f"list({raw}) FILTER (WHERE {invalid})[1:3]"]
    row = connection.execute(
        f"SELECT {', '.join(selects)} FROM read_csv($path, delim = $delim, quote = $quote, escape = $quote, "
        f"header = true, auto_detect = false, columns = {{{all_text}}}, ignore_errors = true, strict_mode = false)",
        {"path": str(source), "delim": spec.csv.delimiter, "quote": spec.csv.quote}).fetchone()
    found = {}
    for i, (name, column) in enumerate(declared):
        examples = row[2 * i + 1] or []
        found[name] = {"invalid": row[2 * i], "examples": examples,
                       "why": parse_number(examples[0], NumberStyle.of(column)).problem if examples else None}
    return found


def _read_csv_sql(spec: EntitySpec, header: list[str], strict: bool = True,
                  absent: dict[str, str] | None = None) -> tuple[str, list[str], list[str]]:
    """SELECT over read_csv with explicit types; returns (sql, missing canonical cols, unmapped source cols).

    absent: optional canonical columns of the pipeline that the provider does not map (name -> type), read
    as typed NULL columns so that every provider's tables have the same shape for the SQL."""
    # a number written with separators, currency or signs is read as text, then by its declared format
    type_of_source = {c.source: "VARCHAR" if c.number else DUCKDB_TYPES[c.type] for c in spec.columns.values()}
    column_types = ", ".join(
        f"{string_literal(name)}: {string_literal(type_of_source.get(name, 'VARCHAR'))}" for name in header
    )
    select, missing = [], []
    for canonical, column in spec.columns.items():
        if column.source in header:
            source = quote_source_column(column.source)
            value = (number_sql(source, NumberStyle.of(column), DUCKDB_TYPES[column.type])[0] if column.number
                     else normalized(source, column))
            select.append(f"{value} AS {quote_identifier(canonical)}")
        else:
            missing.append(canonical)
            select.append(f"CAST(NULL AS {DUCKDB_TYPES[column.type]}) AS {quote_identifier(canonical)}")
    select += [f"CAST(NULL AS {DUCKDB_TYPES[kind]}) AS {quote_identifier(name)}" for name, kind in (absent or {}).items()]
    mapped = {c.source for c in spec.columns.values()}
    sql = (
        f"SELECT {', '.join(select)} FROM read_csv($path, delim = $delim, quote = $quote, escape = $quote, "
        f"header = true, auto_detect = false, columns = {{{column_types}}}, dateformat = $date_format, "
        f"store_rejects = true, rejects_table = 'rejects', rejects_scan = 'reject_scans'"
        f"{'' if strict else ', strict_mode = false'})"
    )
    return sql, missing, [name for name in header if name not in mapped]


def ocr_to_csv(ctx: RunContext, entity: str, spec: EntitySpec, pdf: Path) -> tuple[Path, dict[str, Any]]:
    """Run the OCR of a scanned PDF entity into run_dir/ocr/<entity>.csv (+ report); the DQ gate judges
    its flagged cells, so OCR itself never rejects here unless the PDF is unreadable."""
    import csv as csv_module
    import io

    from batchops.ocr import OcrError, pdf_to_table, rules_from_entity

    rules = rules_from_entity(spec)
    try:
        result = pdf_to_table(pdf, rules=rules, dpi=spec.ocr.dpi, lang=spec.ocr.lang,
                              min_confidence=spec.ocr.min_confidence, max_invalid=1.0, strict_pages=False)
    except OcrError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            write_json_atomic(ctx.run_dir / f"ocr_report_{entity}.json", report)
        raise InputDataError(f"{entity}: OCR of {pdf} failed: {exc}") from exc
    buffer = io.StringIO()
    writer = csv_module.writer(buffer, delimiter=spec.csv.delimiter, quotechar=spec.csv.quote, lineterminator="\n")
    writer.writerow([rule.header for rule in rules])
    writer.writerows(result.rows)
    csv_path = write_text_atomic(ctx.run_dir / "ocr" / f"{entity}.csv", buffer.getvalue())
    write_json_atomic(ctx.run_dir / f"ocr_report_{entity}.json", result.report)  # next to dq_report
    report = result.report
    summary = {"cells": report["cells"], "flagged_cells": len(report["flagged_cells"]),
               "invalid_cells": report["invalid_cells"], "low_confidence_cells": report["low_confidence_cells"],
               "pages": len(report["pages"]), "rows_per_page": report["rows_per_page"],
               "pages_without_rows": report["pages_without_rows"], "row_gaps": report["row_gaps"],
               "reconciliation_failures": report.get("reconciliation_failures", []),
               "seconds": report["seconds"], "report": str(ctx.run_dir / f"ocr_report_{entity}.json")}
    return csv_path, summary


def _stage_csv(connection, spec: EntitySpec, source: Path, header: list[str], target: Path,
               absent: dict[str, str]) -> dict[str, Any]:
    """COPY the typed SELECT into staging Parquet. Mixed CRLF/LF line ends, which DuckDB's strict parser
    refuses, are read again in its lenient mode (only then), and the report says so."""
    parameters = {"path": str(source), "delim": spec.csv.delimiter, "quote": spec.csv.quote,
                  "date_format": spec.csv.date_format}
    notes: dict[str, Any] = {}
    for strict in (True, False):
        select_sql, missing, unmapped = _read_csv_sql(spec, header, strict, absent)

        def copy_to(temp: Path, select_sql: str = select_sql) -> None:
            connection.execute(
                f"COPY ({select_sql}) TO {string_literal(str(temp))} (FORMAT parquet, COMPRESSION zstd)", parameters)

        try:
            write_with(target, copy_to)
            return {"missing": missing, "unmapped": unmapped, **notes}
        except Exception as exc:
            if not is_duckdb_error(exc):
                raise
            cause = next((hint for sign, hint in WRITE_FAILURES.items() if sign in str(exc)), None)
            if cause and str(source) not in str(exc):  # (an unreadable landing file is the input's problem)
                raise ArtifactWriteError(f"cannot write {target}: {cause}, then clear the task to re-run it. "
                                         "Earlier artifacts were left as they were.") from exc
            if strict and "invalid state" in str(exc) and mixes_line_endings(source):
                notes["line_endings"] = "mixed CRLF and LF; read with strict_mode=false"
                connection.execute("DROP TABLE IF EXISTS rejects; DROP TABLE IF EXISTS reject_scans")
                continue
            first_line = str(exc).strip().splitlines()[0]
            raise InputDataError(
                f"cannot read {source}: {first_line}. Check that the file matches the provider config "
                f"(delimiter {spec.csv.delimiter!r}, quote {spec.csv.quote!r}, UTF-8) and re-deliver it.") from exc
    raise AssertionError("unreachable")


def ingest_entity(ctx: RunContext, entity: str, spec: EntitySpec, hasher: ThreadPoolExecutor) -> dict[str, Any]:
    delivered = landing_file(ctx, entity, spec)
    settled = wait_until_settled(delivered, ctx.provider.landing_settle_seconds, ctx.provider.ready_marker)
    started = time.perf_counter()
    sha_future = hasher.submit(sha256_of_file, delivered)  # hashing overlaps DuckDB's parse
    ocr_summary = None
    source = delivered
    if spec.format == "pdf":
        source, ocr_summary = ocr_to_csv(ctx, entity, spec, delivered)
        # the OCR's CSV holds numbers as plain digits with a decimal point, whatever the statement printed
        spec = spec.model_copy(update={"columns": {name: column.model_copy(update={"number": None})
                                                   for name, column in spec.columns.items()}})
    header = read_header(source, spec)
    target = ctx.staging_dir / f"{entity}.parquet"
    connection = scratch_connection(ctx.settings)
    try:
        absent = {column: kind for column, kind in ctx.pipeline.optional.get(entity, {}).items()
                  if column not in spec.columns}
        staged = _stage_csv(connection, spec, source, header, target, absent)
        changed_keys = key_text_changes(connection, spec, source, header)
        unread_numbers = number_format_rejects(connection, spec, source, header)
        rows = connection.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(target)}).fetchone()[0]
        reject_rows = connection.execute(
            "SELECT count(DISTINCT line), count(*) FROM rejects").fetchone()
        by_column = dict(connection.execute(
            "SELECT coalesce(column_name, '(row)') || ': ' || error_type, count(*) FROM rejects "
            "GROUP BY ALL ORDER BY 2 DESC").fetchall())
        samples = [dict(zip(("line", "column", "error_type", "raw", "message"), row, strict=True)) for row in connection.execute(
            "SELECT line, column_name, error_type, left(csv_line, 200), left(error_message, 300) FROM rejects "
            "ORDER BY line LIMIT $n", {"n": REJECT_SAMPLES}).fetchall()]
    finally:
        connection.close()
    sha256 = sha_future.result()
    assert_unchanged(delivered, settled)  # the staged rows and the sha256 describe one version of the file
    return {
        "file": str(delivered), "bytes": settled.st_size, "sha256": sha256, "ocr": ocr_summary,
        "rows": rows, "rejected_rows": reject_rows[0], "rejected_values": reject_rows[1],
        "rejects_by_column": by_column, "reject_samples": samples,
        "missing_columns": staged["missing"], "unmapped_source_columns": staged["unmapped"],
        "absent_optional_columns": sorted(absent), "key_text_changes": changed_keys,
        "number_format_rejects": unread_numbers,
        "line_endings": staged.get("line_endings", "consistent"),
        "staging": str(target), "seconds": round(time.perf_counter() - started, 3),
    }


def ingest(ctx: RunContext) -> dict[str, Any]:
    """Ingest every entity; writes staging/<entity>.parquet and ingest_report.json."""
    log = ctx.logger("ingest")
    report: dict[str, Any] = {"provider": ctx.provider.provider_id, "snapshot_date": ctx.snapshot_date.isoformat(),
                              "entities": {}}
    check_ready_marker(ctx)
    with ThreadPoolExecutor(max_workers=1) as hasher:
        for entity, spec in ctx.provider.entities.items():
            with log.timed("ingest_entity", entity=entity) as logged:
                result = ingest_entity(ctx, entity, spec, hasher)
                logged.update(rows=result["rows"], rejected_rows=result["rejected_rows"], bytes=result["bytes"])
            if result["line_endings"] != "consistent":
                log.event("mixed_line_endings", level="WARNING", entity=entity, file=result["file"],
                          detail=result["line_endings"])
            report["entities"][entity] = result
    write_json_atomic(ctx.run_dir / "ingest_report.json", report)
    return report
