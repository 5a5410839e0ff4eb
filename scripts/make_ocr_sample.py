"""Make the OCR sample: data/ocr_input/sample_input.pdf, a scanned-looking (image-only, skewed, blurred,
speckled) 3-page transactions statement in provider_c's layout, and its ground truth sample_truth.csv.

    python scripts/make_ocr_sample.py [--rows 110] [--seed 20260201]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

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


def make_scan(target: Path, truth: Path, rows: int, seed: int, **render_options) -> list[list[str]]:
    table = truth_rows(rows, seed)
    render_table_pdf(HEADER, table, target, "provider_c transactions statement", seed=seed, **render_options)
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=110)
    parser.add_argument("--seed", type=int, default=20260201)
    args = parser.parse_args()
    folder = REPO / "data" / "ocr_input"
    make_scan(folder / "sample_input.pdf", folder / "sample_truth.csv", args.rows, args.seed)
    print(f"wrote {folder / 'sample_input.pdf'} and {folder / 'sample_truth.csv'}")


if __name__ == "__main__":
    main()
