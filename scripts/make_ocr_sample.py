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

from batchops.ocr_eval import VARIANTS
from batchops.scansim import render_table_pdf

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
    options = dict(VARIANTS[variant]["render"])
    return make_scan(target, truth, rows, seed, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=110)
    parser.add_argument("--seed", type=int, default=20260201)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="draw a benchmark layout variant instead")
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
