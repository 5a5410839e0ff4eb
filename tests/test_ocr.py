"""OCR of scanned statements: accuracy on scans with known truth (vs a naive baseline), the command line,
and clear errors for bad inputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.ocr import ColumnRule, OcrError, normalize_cell, pdf_to_table, rules_from_entity
from batchops.ocr_eval import cell_accuracy, naive_read
from batchops.scansim import render_table_pdf

from conftest import REPO, configs

sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402

SCRIPT = REPO / "scripts" / "pdf_to_csv.py"


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> list[ColumnRule]:
    from batchops.settings import Settings

    settings = Settings.from_env(default_home=REPO, env={})
    return rules_from_entity(configs(settings).providers["provider_c"].entities["transactions"])


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_scans_are_read_cell_for_cell(tmp_path, rules, seed):
    pdf = tmp_path / "scan.pdf"
    truth = make_ocr_sample.make_scan(pdf, tmp_path / "truth.csv", rows=70, seed=seed, rows_per_page=40)
    result = pdf_to_table(pdf, rules=rules)
    assert result.columns == [r.name for r in rules]
    assert len(result.report["pages"]) == 2 and all(p["header_found"] for p in result.report["pages"])
    assert len(result.rows) == len(truth)  # no extra or missing rows: titles, footers, repeated headers skipped
    accuracy = cell_accuracy(truth, result.rows)
    assert accuracy >= 0.99, accuracy
    naive = cell_accuracy(truth, naive_read(pdf, make_ocr_sample.HEADER))
    assert accuracy > naive  # the layout reader beats splitting image_to_string on whitespace


def test_header_alone_is_enough_without_a_schema(tmp_path):
    pdf = tmp_path / "scan.pdf"
    truth = make_ocr_sample.make_scan(pdf, tmp_path / "truth.csv", rows=30, seed=5)
    result = pdf_to_table(pdf)
    assert result.columns == make_ocr_sample.HEADER
    assert cell_accuracy(truth, result.rows) >= 0.99


@pytest.mark.parametrize(("raw", "rule", "value"), [
    ("7263977421", ColumnRule("t", "t", pattern=r"T\d{9}"), "T263977421"),     # T read as 7
    ("17263977421", ColumnRule("t", "t", pattern=r"T\d{9}"), "T263977421"),    # T read as 17
    ("co0O0001", ColumnRule("c", "c", pattern=r"C\d{7}"), "C0000001"),         # o/O for 0, lowercase prefix
    ("1S.O8", ColumnRule("a", "a", "float", pattern=r"\d+\.\d{2}"), "15.08"),  # S/5, O/0
    ("0l.l2.2025", ColumnRule("d", "d", "date", date_format="%d.%m.%Y"), "01.12.2025"),
    ("stor", ColumnRule("c", "c", allowed_values=("web", "store", "app")), "store"),
])
def test_common_confusions_are_repaired(raw, rule, value):
    assert normalize_cell(raw, rule) == (value, None)


def test_values_that_cannot_be_repaired_are_flagged():
    value, problem = normalize_cell("32576", ColumnRule("a", "a", "float", pattern=r"\d+\.\d{2}"))
    assert problem and "does not match" in problem


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_command_line_defaults_read_the_sample(tmp_path):
    sample = REPO / "data" / "ocr_input"
    output = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--input", str(sample / "sample_input.pdf"), "--output",
                           str(output), "--provider", "provider_c", "--entity", "transactions"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    truth = read_csv(sample / "sample_truth.csv")
    read = read_csv(output)
    assert read[0] == truth[0]
    assert cell_accuracy(truth[1:], read[1:]) >= 0.99
    report = json.loads(Path(str(output) + ".report.json").read_text())
    assert {"page", "seconds", "rows", "mean_confidence"} <= set(report["pages"][0])


def test_too_many_invalid_cells_writes_no_csv(tmp_path):
    pdf = render_table_pdf(["txn_ref", "amount"], [["T000000001", "12.50"], ["T000000002", "n/a"],
                                                    ["T000000003", "7.25"]], tmp_path / "s.pdf", "statement")
    output = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--input", str(pdf), "--output", str(output), "--provider",
                           "provider_c", "--entity", "transactions"], capture_output=True, text=True)
    assert done.returncode == 1
    assert not output.exists() and Path(str(output) + ".report.json").exists()


def test_corrupt_pdf_is_named(tmp_path, bad_input):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(OcrError, match="bad.pdf is not a readable PDF") as refused:
        pdf_to_table(bad)
    bad_input.record("OCR", "corrupt PDF", refused.value, home=tmp_path, kept="no CSV written")


def test_blank_page_has_no_table(tmp_path, rules, bad_input):
    blank = render_table_pdf(make_ocr_sample.HEADER, [], tmp_path / "blank.pdf", "", blank_pages=1)
    with pytest.raises(OcrError, match="no page has the table header") as refused:
        pdf_to_table(blank, rules=rules, pages=[2])
    bad_input.record("OCR", "blank page", refused.value, home=tmp_path, kept="no CSV written")


def test_missing_tesseract_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "nope"))
    with pytest.raises(OcrError, match="tesseract-ocr"):
        pdf_to_table(REPO / "data" / "ocr_input" / "sample_input.pdf")


def test_missing_poppler_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("POPPLER_PATH", str(tmp_path))
    with pytest.raises(OcrError, match="poppler-utils"):
        pdf_to_table(REPO / "data" / "ocr_input" / "sample_input.pdf")


def test_pages_run_with_one_openmp_thread_each():
    probe = "import os; from batchops.ocr import _limit_threads; _limit_threads(); print(os.environ['OMP_THREAD_LIMIT'])"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ}).stdout.strip() == "1"


def _ocr_in_daemon(pdf: str, results) -> None:
    try:
        report = pdf_to_table(Path(pdf), pages=[1, 2], workers=2).report
        results.put({"rows": report["rows"], "workers": report["workers"]})
    except Exception as exc:  # noqa: BLE001 - the parent asserts on it
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def test_pages_run_in_parallel_inside_a_daemonic_worker():
    """Celery's prefork pool runs tasks in daemonic processes, which may not start processes of their
    own (the Celery load matrix found provider_c failing with exactly that)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_ocr_in_daemon, args=(str(REPO / "data" / "ocr_input" / "sample_input.pdf"),
                                                         results), daemon=True)
    child.start()
    outcome = results.get(timeout=180)
    child.join(timeout=30)
    assert "error" not in outcome, outcome
    assert outcome["workers"] == 2 and outcome["rows"] > 0
