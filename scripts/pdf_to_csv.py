"""Scanned provider PDF -> validated CSV, with Tesseract and Poppler (see batchops.ocr).

    python scripts/pdf_to_csv.py                       # data/ocr_input/sample_input.pdf -> ocr_output.csv
    python scripts/pdf_to_csv.py --input X.pdf --output X.csv --provider provider_c --entity transactions
        [--dpi 300] [--lang eng] [--pages 1,3-4] [--min-confidence 60] [--max-invalid 0.01] [--workers N]
        [--flag-column] [--no-reconcile]
    python scripts/pdf_to_csv.py --input X.pdf --output X.csv --no-schema   # columns from the header row

Writes the CSV and a sidecar report (<output>.report.json: per page its source (text layer or OCR),
rows and mean confidence; the header cells matched; every invalid, doubtful or low-confidence cell).
--flag-column adds `_ocr_flags` to each row ('amount:low_confidence;...'). It writes no CSV, only
the report, and exits 1 when a required column is missing, a page has text but no rows, the header
cannot be told (without a schema), the statement's printed subtotals, page totals or balances do not add
up with the amounts read (unless --no-reconcile), or more cells than --max-invalid fail validation.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from batchops.artifacts import write_json_atomic, write_text_atomic
from batchops.config import DEFAULTS_FILE_NAME, load_provider_file
from batchops.errors import BatchOpsError
from batchops.ocr import OcrError, page_notes, pdf_to_table, rules_from_entity
from batchops.progress import Steps
from batchops.settings import Settings
from batchops.yaml_loader import read_yaml_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO / "data" / "ocr_input" / "sample_input.pdf"
DEFAULT_OUTPUT = REPO / "data" / "ocr_input" / "ocr_output.csv"
SAMPLE_SCHEMA = ("provider_c", "transactions")
FLAG_COLUMN = "_ocr_flags"


def parse_pages(text: str | None) -> list[int] | None:
    if not text:
        return None
    pages: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            pages += list(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--pages {text!r}: use numbers and ranges such as 1,3-4") from None
    return pages


def schema_rules(provider_id: str, entity: str, settings: Settings):
    config_file = settings.config_dir / f"{provider_id}.yaml"
    if not config_file.exists():
        raise OcrError(f"no provider config {config_file} (for --provider {provider_id})")
    defaults_file = settings.config_dir / DEFAULTS_FILE_NAME
    provider = load_provider_file(config_file, read_yaml_file(defaults_file) if defaults_file.exists() else {})
    if entity not in provider.entities:
        raise OcrError(f"provider {provider_id} has no entity {entity!r}; it has {sorted(provider.entities)}")
    return rules_from_entity(provider.entities[entity])


def table_csv(columns: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--dpi", type=int, default=300)
    parser.add_argument("--lang", default="eng")
    parser.add_argument("--pages", type=parse_pages)
    parser.add_argument("--provider", help="take the column schema from this provider's config")
    parser.add_argument("--entity", help="the entity of --provider (e.g. transactions)")
    parser.add_argument("--no-schema", action="store_true", help="read the header row only, all columns as text")
    parser.add_argument("--min-confidence", type=float, default=60.0)
    parser.add_argument("--max-invalid", type=float, default=0.01)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--flag-column", action="store_true",
                        help="add an _ocr_flags column naming each row's flagged cells and why")
    parser.add_argument("--no-reconcile", action="store_true",
                        help="write the CSV even when the statement's printed subtotals, totals or balances do not "
                             "add up with the amounts read (those rows flagged)")
    args = parser.parse_args(argv)
    if bool(args.provider) != bool(args.entity):
        parser.error("--provider and --entity go together")
    settings = Settings.from_env(default_home=REPO)
    report_path = args.output.with_suffix(args.output.suffix + ".report.json")
    try:
        provider, entity = (args.provider, args.entity) if args.provider else (None, None)
        if provider is None and not args.no_schema and args.input.resolve() == DEFAULT_INPUT.resolve():
            provider, entity = SAMPLE_SCHEMA  # the sample is provider_c's transactions statement
        rules = None if provider is None else schema_rules(provider, entity, settings)
        with Steps(f"reading {args.input.name}", 0) as bar:
            result = pdf_to_table(args.input, rules=rules, dpi=args.dpi, lang=args.lang, pages=args.pages,
                                  min_confidence=args.min_confidence, max_invalid=args.max_invalid,
                                  workers=args.workers, progress=bar.advance, page_total=bar.set_total,
                                  reconcile_figures=not args.no_reconcile)
    except OcrError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            write_json_atomic(report_path, report)
            if report.get("pages"):
                print(page_summary(report), file=sys.stderr)
        print(f"error: {exc}" + (f" (report: {report_path})" if report is not None else ""), file=sys.stderr)
        return 1
    except BatchOpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    header = [rule.header for rule in rules] if rules else result.columns
    rows = result.rows
    if args.flag_column:
        header = [*header, FLAG_COLUMN]
        rows = [[*row, flags] for row, flags in zip(rows, result.row_flags, strict=True)]
    write_text_atomic(args.output, table_csv(header, rows))
    write_json_atomic(report_path, result.report)
    report = result.report
    print(page_summary(report), file=sys.stderr)
    print(json.dumps({"output": str(args.output), "report": str(report_path), "rows": report["rows"],
                      "rows_per_page": report["rows_per_page"], "pages": len(report["pages"]),
                      "seconds": report["seconds"], "flagged_cells": len(report["flagged_cells"]),
                      "invalid_cells": report["invalid_cells"], "extra_columns": report["extra_columns"]}))
    return 0


def page_summary(report: dict) -> str:
    """One line per page (source, header, rows), then the total: what a reader checks against the PDF."""
    lines = [f"page {p['page']}: {p['rows']} rows ({p['source']}, header {p['header']}"
             + (f", {p['status'].replace('_', ' ')}" if p["status"] != "table" else "")
             + "".join(f"; {note}" for note in page_notes(p)) + ")"
             for p in report.get("pages", [])]
    checks = report.get("reconciliation") or []
    if checks:
        proven = sum(c["status"] == "ok" for c in checks)
        lines.append(f"printed figures: {proven} of {len(checks)} add up with the amounts read"
                     + "".join(f"\n  {failure}" for failure in report.get("reconciliation_failures", [])))
    if report.get("monospace_font"):
        lines.append("a monospace font: every id with a 0, 6, 8 or 9 was read twice")
    lines.append(f"total: {report.get('rows', 0)} rows, {len(report.get('flagged_cells', []))} flagged cells")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
