"""Cell accuracy and seconds per page: BatchOps' OCR (one and all cores) against a naive
image_to_string + whitespace split, on the same generated scans with known truth.

    python scripts/ocr_benchmark.py [--seeds 5] [--rows 90]      # prints a JSON summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from batchops.ocr import pdf_to_table, rules_from_entity
from batchops.ocr_eval import cell_accuracy, naive_read, timed
from batchops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402

from batchops.config import load_config_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=90)
    args = parser.parse_args()
    os.environ["OMP_THREAD_LIMIT"] = "1"  # the same for the baseline, so both use one core per process
    settings = Settings.from_env(default_home=REPO, env={})
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    rules = rules_from_entity(config_set.providers["provider_c"].entities["transactions"])
    totals = {name: {"correct": 0.0, "cells": 0, "seconds": 0.0} for name in ("batchops_1core", "batchops_all_cores",
                                                                           "naive", "naive_psm6")}
    pages = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(1, args.seeds + 1):
            pdf = Path(folder) / f"scan_{seed}.pdf"
            truth = make_ocr_sample.make_scan(pdf, Path(folder) / f"truth_{seed}.csv", args.rows, seed)
            cells = len(truth) * len(truth[0])
            runs = {"batchops_1core": lambda pdf=pdf: pdf_to_table(pdf, rules=rules, workers=1).rows,
                    "batchops_all_cores": lambda pdf=pdf: pdf_to_table(pdf, rules=rules).rows,
                    "naive": lambda pdf=pdf: naive_read(pdf, make_ocr_sample.HEADER),
                    "naive_psm6": lambda pdf=pdf: naive_read(pdf, make_ocr_sample.HEADER, psm=6)}
            for name, run in runs.items():
                rows, seconds = timed(run)
                totals[name]["correct"] += cell_accuracy(truth, rows) * cells
                totals[name]["cells"] += cells
                totals[name]["seconds"] += seconds
            pages += -(-args.rows // 45)
    summary = {"scans": args.seeds, "rows_per_scan": args.rows, "pages": pages, "cpus": os.cpu_count()}
    for name, total in totals.items():
        summary[name] = {"cell_accuracy": round(total["correct"] / total["cells"], 4),
                         "seconds_per_page": round(total["seconds"] / pages, 2)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
