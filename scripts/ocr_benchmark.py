"""The OCR benchmark: every layout variant (batchops.ocr_eval.VARIANTS) and statement family (FAMILIES: ruled
tables, furniture and totals, wrapped cells, turned pages, month names, amount formats) drawn with known truth
and read by the real command (scripts/pdf_to_csv.py --flag-column), as a user runs it.

    python scripts/ocr_benchmark.py [--seeds 2] [--rows 90] [--variants plain,reordered]
        [--output benchmarks/results/ocr_variants]       # writes .json and .md
        [--baseline]                                     # also a naive image_to_string split, on plain

Per variant: cell accuracy, rows got / expected, wrong cells, wrong cells not flagged, runs the
command refused (exit 1, no CSV), and CPU seconds per page of the whole command tree (the Python
process, pdftoppm, tesseract: getrusage of waited-for children), beside wall seconds per page.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchops.ocr_eval import (
    FAMILIES,
    STATEMENT_DEFAULTS,
    STATEMENT_HEADER,
    VARIANTS,
    cell_accuracy,
    naive_read,
    statement_config,
    wrong_cells,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402

COMMAND = REPO / "scripts" / "pdf_to_csv.py"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def page_count(pdf: Path) -> int:
    from pdf2image import pdfinfo_from_path

    return int(pdfinfo_from_path(str(pdf))["Pages"])


KINDS = {**VARIANTS, **FAMILIES}


def run_variant(name: str, seed: int, rows: int, folder: Path) -> dict:
    """The command with its defaults. When it refuses a hard variant, it runs again with --max-invalid 1
    to show that the cells it would have written wrong are all flagged."""
    spec = KINDS[name]
    pdf, truth_file = folder / f"{name}_{seed}.pdf", folder / f"{name}_{seed}_truth.csv"
    truth = make_ocr_sample.make_variant(name, pdf, truth_file, rows, seed)
    result = read_variant(name, seed, pdf, truth, folder, [])
    if result["refused"] and spec.get("hard"):
        forced = read_variant(name, seed, pdf, truth, folder, ["--max-invalid", "1"])
        result["forced"] = {k: forced.get(k) for k in ("rows", "accuracy", "wrong", "unflagged", "refused", "message")}
    return result


def read_variant(name: str, seed: int, pdf: Path, truth: list[list[str]], folder: Path, extra: list[str]) -> dict:
    spec = KINDS[name]
    output = folder / f"{name}_{seed}{'_forced' if extra else ''}.csv"
    env = dict(os.environ)
    header = make_ocr_sample.HEADER
    if spec.get("mode") == "no_schema":
        schema = ["--no-schema"]
    elif spec.get("schema") == "statement":  # read by a provider config of its own (number and date formats)
        configs = folder / f"configs_{name}"
        configs.mkdir(exist_ok=True)
        (configs / "_defaults.yaml").write_text(STATEMENT_DEFAULTS)
        (configs / f"statement_{name}.yaml").write_text(statement_config(name))
        env["BATCHOPS_CONFIG_DIR"] = str(configs)
        schema, header = ["--provider", f"statement_{name}", "--entity", "transactions"], STATEMENT_HEADER
    else:
        schema = ["--provider", "provider_c", "--entity", "transactions"]
    before_cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, str(COMMAND), "--input", str(pdf), "--output", str(output),
                           "--flag-column", *schema, *extra], capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - started, children_cpu() - before_cpu
    pages = page_count(pdf)
    result = {"variant": name, "seed": seed, "exit": done.returncode, "pages": pages, "expected_rows": len(truth),
              "cpu_s_per_page": cpu / pages, "wall_s_per_page": wall / pages, "cells": len(truth) * len(truth[0])}
    if done.returncode != 0:
        result.update(rows=0, accuracy=0.0, wrong=None, unflagged=None, refused=True, csv_written=output.exists(),
                      message=done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else "")
        return result
    with output.open(newline="") as handle:
        table = list(csv.reader(handle))
    body = table[1:]
    flags = [row[-1] for row in body]
    read = [row[:-1] for row in body]
    # The command writes the source headers (config order with a schema, the page's without one):
    # compare by column name so a reordered page is judged cell by cell.
    written = table[0]
    positions = [written.index(h) if h in written else None for h in header]
    aligned = [[row[p] if p is not None else "" for p in positions] for row in read]
    wrong, unflagged = wrong_cells(truth, aligned, flags, header)
    result.update(rows=len(read), accuracy=cell_accuracy(truth, aligned), wrong=wrong, unflagged=unflagged,
                  refused=False, csv_written=True)
    return result


def summarize(results: list[dict]) -> dict[str, dict]:
    summary = {}
    for name in KINDS:
        runs = [r for r in results if r["variant"] == name]
        if not runs:
            continue
        read = [r for r in runs if not r["refused"]]
        summary[name] = {
            "about": KINDS[name]["about"], "hard": bool(KINDS[name].get("hard")), "runs": len(runs),
            "refused": len(runs) - len(read),
            "cell_accuracy": round(sum(r["accuracy"] * r["cells"] for r in read) / sum(r["cells"] for r in read), 4)
            if read else None,
            "rows_got": sum(r["rows"] for r in read), "rows_expected": sum(r["expected_rows"] for r in read),
            "wrong_cells": sum(r["wrong"] for r in read), "wrong_unflagged": sum(r["unflagged"] for r in read),
            "cpu_s_per_page": round(statistics.median(r["cpu_s_per_page"] for r in runs), 2),
            "wall_s_per_page": round(statistics.median(r["wall_s_per_page"] for r in runs), 2),
        }
        forced = [r["forced"] for r in runs if r.get("forced") and not r["forced"]["refused"]]
        if forced:
            summary[name]["forced_max_invalid_1"] = {
                "runs": sum(1 for r in runs if r.get("forced")), "read": len(forced),
                "rows_got": sum(f["rows"] for f in forced), "wrong_cells": sum(f["wrong"] for f in forced),
                "wrong_unflagged": sum(f["unflagged"] for f in forced)}
    return summary


def markdown(summary: dict[str, dict], meta: dict) -> str:
    lines = ["| variant | cells right | rows got / expected | wrong cells | wrong, not flagged | refused | "
             "CPU-s/page | wall-s/page |", "|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        accuracy = f"{s['cell_accuracy']:.2%}" if s["cell_accuracy"] is not None else "-"
        refused = f"{s['refused']} of {s['runs']}"
        if s.get("forced_max_invalid_1"):
            f = s["forced_max_invalid_1"]
            refused += (f" (with --max-invalid 1: {f['read']} of {f['runs']} read, the rest refused for a row it "
                        f"could not see; {f['rows_got']} rows, {f['wrong_cells']} wrong, {f['wrong_unflagged']} "
                        "not flagged)" if f["read"] < f["runs"] else
                        f" (with --max-invalid 1: {f['rows_got']} rows, {f['wrong_cells']} wrong, "
                        f"{f['wrong_unflagged']} not flagged)")
        lines.append(f"| {name} ({s['about']}) | {accuracy} | {s['rows_got']} / {s['rows_expected']} | "
                     f"{s['wrong_cells']} | {s['wrong_unflagged']} | {refused} | "
                     f"{s['cpu_s_per_page']} | {s['wall_s_per_page']} |")
    lines.append("")
    if meta.get("naive_baseline_accuracy") is not None:
        lines.append(f"A naive reader (`image_to_string`, split on whitespace) gets {meta['naive_baseline_accuracy']:.2%} "
                     "of the plain variant's cells: Tesseract's default segmentation reads a table column by column.")
        lines.append("")
    lines.append(f"{meta['seeds']} seeds × {meta['rows']} rows per variant ({meta['rows_per_page']} rows a page), "
                 f"{meta['cpus']} CPUs; median CPU-s/page over all runs: {meta['median_cpu_s_per_page']}; "
                 f"`{meta['command']}`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=90)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated; 'families' for every statement family, 'all' for everything")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--render", type=Path, help="only write the .md again from this earlier .json")
    args = parser.parse_args()
    if args.render:
        document = json.loads(args.render.read_text())
        document["variants"] = summarize(document["runs"])
        args.render.write_text(json.dumps(document, indent=2) + "\n")
        args.render.with_suffix(".md").write_text(markdown(document["variants"], document["meta"]))
        return
    names = [n for n in args.variants.split(",") if n]
    names = [m for n in names for m in ({"families": list(FAMILIES), "all": list(KINDS)}.get(n, [n]))]
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(KINDS)}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        from batchops.progress import progress

        jobs = [(name, seed) for name in names for seed in range(1, args.seeds + 1)]
        for name, seed in progress(jobs, "OCR variants"):
            results.append(run_variant(name, seed, args.rows, Path(folder)))
        baseline = None
        if args.baseline:
            pdf = Path(folder) / "baseline.pdf"
            truth = make_ocr_sample.make_scan(pdf, Path(folder) / "baseline.csv", args.rows, 1)
            baseline = round(cell_accuracy(truth, naive_read(pdf, make_ocr_sample.HEADER)), 4)
    summary = summarize(results)
    meta = {"seeds": args.seeds, "rows": args.rows, "rows_per_page": 45, "cpus": os.cpu_count(),
            "median_cpu_s_per_page": round(statistics.median(r["cpu_s_per_page"] for r in results), 2),
            "command": "python scripts/ocr_benchmark.py " + " ".join(sys.argv[1:]), "naive_baseline_accuracy": baseline}
    document = {"meta": meta, "variants": summary, "runs": results}
    print(json.dumps({"meta": meta, "variants": summary}, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
        args.output.with_suffix(".md").write_text(markdown(summary, meta))


if __name__ == "__main__":
    main()
