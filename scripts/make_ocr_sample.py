"""Make the OCR sample: data/ocr_input/sample_input.pdf, a scanned-looking (image-only, skewed, blurred,
speckled) 3-page transactions statement in provider_c's layout, and its ground truth sample_truth.csv.
make_scan() also draws the benchmark's layout variants (batchops.ocr_eval.VARIANTS).

    python scripts/make_ocr_sample.py [--rows 110] [--seed 20260201] [--variant plain] [--output DIR]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import csv
import random
from pathlib import Path

from datetime import date, timedelta
from decimal import Decimal

from batchops.ocr_eval import FAMILIES, STATEMENT_HEADER, VARIANTS
from batchops.scansim import Furniture, render_table_pdf

REPO = Path(__file__).resolve().parents[1]
HEADER = ["txn_ref", "client_ref", "booked_on", "amount", "channel"]


def truth_rows(count: int, seed: int) -> list[list[str]]:
    """Rows shaped like provider_c's statement: ids, day.month.year dates, two-decimal amounts, channels."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        rows.append([f"T{rng.randrange(10**9):09d}", f"C{rng.randrange(1, 10**7):07d}",
                     f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.choice([2024, 2025])}",
                     f"{rng.uniform(1, 2500):.2f}", rng.choice(["web", "store", "app"])])
    return rows


def make_scan(target: Path, truth: Path, rows: int, seed: int, column_order: list[int] | None = None,
              **render_options) -> list[list[str]]:
    """Draw the statement and write its truth (always in HEADER order); returns the truth rows.
    column_order puts the page's columns in another order than the config's."""
    table = truth_rows(rows, seed)
    order = column_order or list(range(len(HEADER)))
    render_table_pdf([HEADER[i] for i in order], [[row[i] for i in order] for row in table], target,
                     "provider_c transactions statement", seed=seed, **render_options)
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(table)
    return table


def make_variant(variant: str, target: Path, truth: Path, rows: int, seed: int) -> list[list[str]]:
    """A layout variant (VARIANTS) or a statement family (FAMILIES); the truth is written in its header's order."""
    if variant in FAMILIES:
        return make_family(variant, target, truth, rows, seed)
    options = dict(VARIANTS[variant]["render"])
    return make_scan(target, truth, rows, seed, **options)


PAYEES = ["ACME STORE", "CITY ELECTRICITY", "NORTHWIND TRADERS", "GREEN GROCER", "RAIL TICKETS", "CAFE ROMA",
          "BOOKSHOP", "PHARMACY", "HARDWARE DEPOT", "CINEMA"]
LONG_TEXT = ["monthly subscription renewal", "order 4471 partial refund", "invoice 2026-118 settlement",
             "standing order to savings account"]


def formatted(amount: Decimal, number: dict, cr_dr: bool, whole: bool) -> str:
    """An amount as the family's statement prints it."""
    thousands, decimal = number.get("thousands", ""), number.get("decimal", ".")
    magnitude = f"{abs(amount):,.0f}" if whole else f"{abs(amount):,.2f}"
    magnitude = magnitude.replace(",", "\x00").replace(".", decimal).replace("\x00", thousands)
    text = f"{number['currency'][0]}{magnitude}" if number.get("currency") else magnitude
    negative = amount < 0
    styles = number.get("negative", ["minus"])
    if cr_dr:
        return f"{text} {'DR' if negative else 'CR'}"
    if not negative:
        return text
    if "parentheses" in styles:
        return f"({text})"
    if "trailing_minus" in styles:
        return f"{text}-"
    return f"-{text}"


def make_family(family: str, target: Path, truth_file: Path, count: int, seed: int,
                misprint: Decimal = Decimal(0)) -> list[list[str]]:
    """A statement of the family: rows of date, description, reference and amount, printed in the family's
    formats with its furniture, and the truth (the values a reader must give: canonical amounts, the dates
    as printed, wrapped descriptions joined) in STATEMENT_HEADER order. provider_c families use make_scan.
    `misprint` is added to every printed total (a statement that does not add up, for tests)."""
    spec = FAMILIES[family]
    if spec.get("schema") != "statement":
        return make_scan(target, truth_file, count, seed, **spec["render"])
    shape = spec.get("statement", {})
    number, date_format = spec.get("number", {}), spec.get("date_format", "%d.%m.%Y")
    rng = random.Random(seed)
    start = date(2026, 1, 1)
    truth, printed = [], []
    for _ in range(count):
        day = start + timedelta(days=rng.randrange(0, 300))
        amount = Decimal(rng.randrange(100, 5_000_00 if not shape.get("whole") else 90_000_00)) / 100
        if shape.get("whole"):
            amount = amount.quantize(Decimal(1))
        if rng.random() < shape.get("negatives", 0.0):
            amount = -amount
        description = f"{rng.choice(PAYEES)} {rng.randrange(1000, 9999)}"
        if rng.random() < shape.get("wrap", 0.0):
            description += "\n" + rng.choice(LONG_TEXT)
        reference = f"T{rng.randrange(10**9):09d}"
        value = f"{amount:.0f}" if shape.get("whole") else f"{amount:.2f}"
        truth.append([day.strftime(date_format), description.replace("\n", " "), reference, value])
        printed.append([day.strftime(date_format), description, reference,
                        formatted(amount, number, shape.get("cr_dr", False), shape.get("whole", False))])
    options: dict = {"rows_per_page": spec.get("render", {}).get("rows_per_page", 40)}
    fmt = lambda figure: formatted(figure, number, shape.get("cr_dr", False), shape.get("whole", False))  # noqa: E731
    if shape.get("title"):
        options["title_lines"] = ("NORTHWIND BANK - Statement of account 0042-118877",
                                  "Period 01 Jan 2026 to 31 Oct 2026")
    if shape.get("page_totals"):
        options["page_footer"] = lambda chunk: [Furniture({1: "Page total", 3: fmt(misprint + sum(
            (Decimal(truth[printed.index(row)][3]) for row in chunk if not isinstance(row, Furniture)), Decimal(0)))})]
    rows: list = printed
    if shape.get("subtotals"):  # per page: the balance brought forward, subtotals, the balance carried forward
        every, per_page = shape["subtotals"], 36
        rows, balance = [], Decimal("1000.00")
        for page_start in range(0, count, per_page):
            rows.append(Furniture({1: "Balance brought forward", 3: fmt(balance)}))
            page_rows = printed[page_start:page_start + per_page]
            for offset in range(0, len(page_rows), every):
                part = page_rows[offset:offset + every]
                rows += part
                subtotal = sum((Decimal(truth[page_start + offset + i][3]) for i in range(len(part))), Decimal(0))
                rows.append(Furniture({1: "Subtotal", 3: fmt(subtotal + misprint)}))
                balance += subtotal
            rows.append(Furniture({1: "Balance carried forward", 3: fmt(balance)}))
        options["rows_per_page"] = per_page + 2 + -(-per_page // every)
    render_table_pdf(STATEMENT_HEADER, rows, target, "Northwind Bank statement", seed=seed,
                     **{**spec.get("render", {}), **options})
    with truth_file.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(STATEMENT_HEADER)
        writer.writerows(truth)
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=110)
    parser.add_argument("--seed", type=int, default=20260201)
    parser.add_argument("--variant", choices=sorted(VARIANTS) + sorted(FAMILIES),
                        help="draw a benchmark layout variant or statement family instead")
    parser.add_argument("--output", type=Path, default=REPO / "data" / "ocr_input")
    args = parser.parse_args()
    name = f"variant_{args.variant}" if args.variant else "sample"
    pdf, truth = args.output / f"{name}_input.pdf", args.output / f"{name}_truth.csv"
    if args.variant:
        make_variant(args.variant, pdf, truth, args.rows, args.seed)
    else:
        make_scan(pdf, truth, args.rows, args.seed)
    print(f"wrote {pdf} and {truth}")


if __name__ == "__main__":
    main()
