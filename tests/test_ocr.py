"""OCR of provider statements: the layouts real statements come in (columns in any order, the header
on page 1 only, text-layer and mixed PDFs, no schema), repairs that never invent a value, flags that
reach the data, and clear refusals instead of a short table."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.ocr import ColumnRule, OcrError, normalize_cell, pdf_to_table, read_cell, rules_from_entity
from batchops.ocr.layout import FOOTER, Word, edge_outliers, row_gaps
from batchops.ocr_eval import cell_accuracy, naive_read, wrong_cells
from batchops.scansim import Text, render_table_pdf, write_pdf

from conftest import REPO, configs

sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402

SCRIPT = REPO / "scripts" / "pdf_to_csv.py"
SCHEMA = ["--provider", "provider_c", "--entity", "transactions"]


@pytest.fixture(scope="module")
def rules() -> list[ColumnRule]:
    from batchops.settings import Settings

    settings = Settings.from_env(default_home=REPO, env={})
    return rules_from_entity(configs(settings).providers["provider_c"].entities["transactions"])


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def run_command(pdf: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--input", str(pdf), "--output", str(output), "--flag-column",
                           *extra], capture_output=True, text=True)


def judged(truth: list[list[str]], output: Path) -> tuple[float, int, int]:
    """(cell accuracy, rows, wrong cells not flagged) of the command's CSV, columns matched by name."""
    table = read_csv(output)
    header, body = table[0], table[1:]
    positions = [header.index(h) for h in make_ocr_sample.HEADER]
    aligned = [[row[p] for p in positions] for row in body]
    flags = [row[header.index("_ocr_flags")] for row in body]
    _, unflagged = wrong_cells(truth, aligned, flags, make_ocr_sample.HEADER)
    return cell_accuracy(truth, aligned), len(body), unflagged


# ---------------------------------------------------------------- layouts, end to end through the command


@pytest.mark.parametrize("variant", ["plain", "reordered", "header_once", "text_layer", "mixed", "blank_middle"])
def test_layout_variants_are_read_exactly(tmp_path, variant):
    pdf, truth_file = tmp_path / "statement.pdf", tmp_path / "truth.csv"
    truth = make_ocr_sample.make_variant(variant, pdf, truth_file, rows=90, seed=7)
    output = tmp_path / "out.csv"
    done = run_command(pdf, output, *SCHEMA)
    assert done.returncode == 0, done.stderr
    accuracy, rows, unflagged = judged(truth, output)
    assert rows == len(truth), done.stderr  # exact row count: never a short table
    assert accuracy >= 0.99 and unflagged == 0, (accuracy, unflagged)
    report = json.loads(Path(str(output) + ".report.json").read_text())
    assert sum(report["rows_per_page"].values()) == len(truth)
    assert f"total: {len(truth)} rows" in done.stderr  # the CLI prints rows per page and the total
    sources = {page["source"] for page in report["pages"]}
    if variant == "text_layer":
        assert sources == {"text"}
    elif variant == "mixed":
        assert sources == {"text", "ocr"}
    else:
        assert sources == {"ocr"}
    if variant == "header_once":
        assert [p["header"] for p in report["pages"]] == ["found", "continued"]
    if variant == "blank_middle":
        assert [p["status"] for p in report["pages"]] == ["table", "empty", "table"]


def test_no_schema_reads_a_bold_header_as_whole_names(tmp_path):
    pdf = tmp_path / "statement.pdf"
    truth = make_ocr_sample.make_variant("no_schema_bold", pdf, tmp_path / "truth.csv", rows=60, seed=5)
    result = pdf_to_table(pdf)
    assert result.columns == make_ocr_sample.HEADER  # 'client_ref', never 'client' and '_ref'
    assert len(result.rows) == len(truth) and cell_accuracy(truth, result.rows) >= 0.99


def test_hard_scans_flag_every_wrong_cell_or_refuse(tmp_path):
    pdf = tmp_path / "statement.pdf"
    truth = make_ocr_sample.make_variant("stamp_pen", pdf, tmp_path / "truth.csv", rows=90, seed=1)
    output = tmp_path / "out.csv"
    done = run_command(pdf, output, *SCHEMA)
    if done.returncode != 0:
        assert not output.exists() and "error:" in done.stderr
    forced = run_command(pdf, output, *SCHEMA, "--max-invalid", "1")
    if forced.returncode == 0:
        accuracy, rows, unflagged = judged(truth, output)
        assert rows == len(truth) and unflagged == 0, (rows, unflagged)
    else:
        assert not output.exists() or done.returncode == 0


def test_the_layout_reader_beats_a_naive_split(tmp_path, rules):
    pdf = tmp_path / "scan.pdf"
    truth = make_ocr_sample.make_scan(pdf, tmp_path / "truth.csv", rows=70, seed=11, rows_per_page=40)
    accuracy = cell_accuracy(truth, pdf_to_table(pdf, rules=rules).rows)
    assert accuracy >= 0.99 and accuracy > cell_accuracy(truth, naive_read(pdf, make_ocr_sample.HEADER))


# ---------------------------------------------------------------- refusals that name what is wrong


def _statement_pages(prefix_text: list[str], columns: list[str], rows: list[list[str]]) -> list[tuple[str, object]]:
    texts = [Text(160, 200 + 70 * i, line, 40, "sans") for i, line in enumerate(prefix_text)]
    pages: list[tuple[str, object]] = [("text", (texts, []))] if prefix_text else []
    table = [Text(160 + 420 * i, 320, name, 40, "sans") for i, name in enumerate(columns)]
    for number, row in enumerate(rows):
        table += [Text(160 + 420 * i, 400 + 62 * number, value, 40, "sans") for i, value in enumerate(row)]
    pages.append(("text", (table, [])))
    return pages


def test_a_page_with_text_but_no_rows_fails_and_names_it(tmp_path, rules, bad_input):
    rows = make_ocr_sample.truth_rows(8, 3)
    pdf = write_pdf(_statement_pages(["Dear customer,", "please find your statement enclosed."],
                                     make_ocr_sample.HEADER, rows), tmp_path / "letter.pdf")
    output = tmp_path / "out.csv"
    done = run_command(pdf, output, *SCHEMA)
    assert done.returncode == 1 and not output.exists()
    assert "page(s) [1] have text but no table rows" in done.stderr and "--pages" in done.stderr
    bad_input.record("OCR", "a cover letter page before the table (text, no rows)", done.stderr.strip().splitlines()[-1],
                     home=tmp_path, kept="no CSV written")
    assert run_command(pdf, output, *SCHEMA, "--pages", "2").returncode == 0
    assert len(read_csv(output)) == 1 + len(rows)


def test_a_missing_required_column_names_searched_and_found_headers(tmp_path, rules, bad_input):
    rows = [row[:3] + row[4:] for row in make_ocr_sample.truth_rows(6, 4)]
    columns = [c for c in make_ocr_sample.HEADER if c != "amount"]
    pdf = write_pdf(_statement_pages([], columns, rows), tmp_path / "no_amount.pdf")
    with pytest.raises(OcrError) as refused:
        pdf_to_table(pdf, rules=rules)
    message = str(refused.value)
    assert "['amount']" in message and "searched for ['txn_ref', 'client_ref'" in message and "found ['txn_ref'" in message
    bad_input.record("OCR", "statement without a required column", message, home=tmp_path, kept="no CSV written")


def test_no_header_lists_the_source_headers_and_the_closest_line(tmp_path, rules, bad_input):
    pdf = write_pdf(_statement_pages([], ["reference", "client", "when"], [["a1", "b2", "c3"]] * 4),
                    tmp_path / "other.pdf")
    with pytest.raises(OcrError) as refused:
        pdf_to_table(pdf, rules=rules)
    message = str(refused.value)
    assert "no page has the table header" in message and "'booked_on'" in message
    assert "closest line found was 'reference client when'" in message
    bad_input.record("OCR", "a document without the table's header", message, home=tmp_path, kept="no CSV written")


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


def test_too_many_invalid_cells_writes_no_csv(tmp_path):
    pdf = render_table_pdf(["txn_ref", "amount"], [["T000000001", "12.50"], ["T000000002", "n/a"],
                                                    ["T000000003", "7.25"]], tmp_path / "s.pdf", "statement")
    output = tmp_path / "out.csv"
    done = run_command(pdf, output, *SCHEMA)
    assert done.returncode == 1
    assert not output.exists() and Path(str(output) + ".report.json").exists()


def test_missing_tesseract_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "nope"))
    with pytest.raises(OcrError, match="tesseract-ocr"):
        pdf_to_table(REPO / "data" / "ocr_input" / "sample_input.pdf")


def test_missing_poppler_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("POPPLER_PATH", str(tmp_path))
    with pytest.raises(OcrError, match="poppler-utils"):
        pdf_to_table(REPO / "data" / "ocr_input" / "sample_input.pdf")


# ---------------------------------------------------------------- the sample through the command


def test_command_line_reads_the_sample_with_flags(tmp_path):
    sample = REPO / "data" / "ocr_input"
    output = tmp_path / "out.csv"
    done = run_command(sample / "sample_input.pdf", output, *SCHEMA)
    assert done.returncode == 0, done.stderr
    truth = read_csv(sample / "sample_truth.csv")
    read = read_csv(output)
    assert read[0] == truth[0] + ["_ocr_flags"]
    assert cell_accuracy(truth[1:], [row[:-1] for row in read[1:]]) >= 0.99
    report = json.loads(Path(str(output) + ".report.json").read_text())
    assert {"page", "source", "rows", "header", "status", "mean_confidence"} <= set(report["pages"][0])
    summary = json.loads(done.stdout)
    assert summary["rows"] == len(truth) - 1 and sum(summary["rows_per_page"].values()) == summary["rows"]


# ---------------------------------------------------------------- repairs never invent a value


@pytest.mark.parametrize(("raw", "rule", "value"), [
    ("7263977421", ColumnRule("t", "t", pattern=r"T\d{9}"), "T263977421"),     # T read as 7
    ("17263977421", ColumnRule("t", "t", pattern=r"T\d{9}"), "T263977421"),    # T read as 17
    ("co0O0001", ColumnRule("c", "c", pattern=r"C\d{7}"), "C0000001"),         # o/O for 0, lowercase prefix
    ("€9549657", ColumnRule("c", "c", pattern=r"C\d{7}"), "C9549657"),         # C read as a euro sign
    ("1S.O8", ColumnRule("a", "a", "float", pattern=r"\d+\.\d{2}"), "15.08"),  # S/5, O/0 inside the number
    ("0l.l2.2025", ColumnRule("d", "d", "date", date_format="%d.%m.%Y"), "01.12.2025"),
    ("stor", ColumnRule("c", "c", allowed_values=("web", "store", "app")), "store"),
    ("963.83 .", ColumnRule("a", "a", "float"), "963.83"),                      # debris after the value
    ("963.83.", ColumnRule("a", "a", "float"), "963.83"),
    ("- 2026-07-18", ColumnRule("d", "d", "date"), "2026-07-18"),              # debris before the value
    ("T100037 |", ColumnRule("t", "t", pattern=r"T\d{6}"), "T100037"),         # a rule line, not a digit
    ("7144272509.", ColumnRule("t", "t", pattern=r"T\d{9}"), "T144272509"),
    ("-12.50", ColumnRule("a", "a", "float"), "-12.50"),                        # a minus touching digits stays
])
def test_common_confusions_and_debris_are_repaired(raw, rule, value):
    assert read_cell(raw, rule).value == value and read_cell(raw, rule).problem is None
    assert read_cell(raw, rule).doubt is None


@pytest.mark.parametrize(("raw", "rule"), [
    ("C4906 7", ColumnRule("c", "c", pattern=r"C\d{4}")),          # 'C9067' would drop a real digit
    ("T100037|", ColumnRule("t", "t", pattern=r"T\d{6}")),         # 'T000371' would keep the noise as a digit
    ("2026-06-2", ColumnRule("d", "d", "date")),                   # not zero-padded: not %Y-%m-%d
    ("2026-6-02", ColumnRule("d", "d", "date")),
    ("32576", ColumnRule("a", "a", "float", pattern=r"\d+\.\d{2}")),
])
def test_repairs_that_would_change_the_digits_are_refused(raw, rule):
    assert read_cell(raw, rule).problem is not None, read_cell(raw, rule)


@pytest.mark.parametrize(("raw", "rule"), [
    ("1 933.38", ColumnRule("a", "a", "float")),                   # a speck beside the number joined in
    ("|933.38", ColumnRule("a", "a", "float")),                    # a mark at the edge read as 1
    ("C4906 7", ColumnRule("c", "c", pattern=r"C\d{5}")),          # pieces joined into one id
    ("T10003|", ColumnRule("t", "t", pattern=r"T\d{6}")),
])
def test_repairs_that_could_invent_a_digit_are_kept_but_flagged(raw, rule):
    reading = read_cell(raw, rule)
    assert reading.problem is None and reading.doubt, reading


def test_normalize_cell_keeps_its_two_value_form():
    assert normalize_cell("0l.l2.2025", ColumnRule("d", "d", "date", date_format="%d.%m.%Y")) == ("01.12.2025", None)


# ---------------------------------------------------------------- geometry, without OCR


def _word(text: str, left: float, right: float, top: float = 100.0, confidence: float = 95.0) -> Word:
    return Word(text, left, top, right, top + 10, confidence)


def test_split_header_words_are_one_column_when_the_values_cross_the_gap(tmp_path):
    from batchops.ocr import _merge_header_words

    header = [_word("customer", 10, 60), _word("_id", 61, 75), _word("amount", 120, 160)]
    data = [[_word(f"C00{i}", 10, 70, 120 + 15 * i), _word("12.50", 120, 150, 120 + 15 * i)] for i in range(5)]
    assert _merge_header_words(tmp_path / "x.pdf", 1, header, data) == ["customer_id", "amount"]


def test_a_header_that_cannot_be_told_refuses(tmp_path):
    from batchops.ocr import _merge_header_words

    header = [_word("first", 10, 40), _word("name", 80, 110), _word("amount", 200, 240)]  # far apart, no gutter
    data = [[_word(f"Someone-with-a-long-name-{i}", 10, 120, 120 + 15 * i), _word("1.00", 200, 230, 120 + 15 * i)]
            for i in range(5)]
    with pytest.raises(OcrError, match="cannot be told with confidence"):
        _merge_header_words(tmp_path / "x.pdf", 1, header, data)


def test_footers_are_recognised_as_misread():
    assert all(FOOTER.search(t) for t in ["Page 1 of 2", "Pa9e10f2", "page 3/4"])
    assert not FOOTER.search("T123456789 C1234567 12.01.2024 1.00 web")


def test_a_value_that_starts_a_character_late_is_doubtful():
    cells = [(100.0, 130.0, 100.0 + 15 * i, "1662.19") for i in range(8)]
    cells[3] = (104.3, 130.0, 145.0, "662.19")  # the leading 1 under a pen stroke
    assert list(edge_outliers(cells)) == [3]


def test_a_rule_under_the_header_read_as_glyphs_is_not_a_row():
    from batchops.ocr.layout import split_header_marks

    header = [_word("txn_ref", 40, 70, 77), _word("amount", 290, 320, 78)]
    underline = [_word("Ne", 38, 50, 84, 20), _word("EO", 294, 305, 83, 23)]  # the header's rule line
    first_row = [_word("T000000046", 41, 90, 96), _word("22.83", 293, 318, 98)]
    kept, marks = split_header_marks(header, [underline, first_row])
    assert kept == [first_row] and marks == ["Ne EO"]


def test_a_row_pitch_gap_is_reported():
    assert row_gaps([100, 115, 130, 160, 175]) and not row_gaps([100, 115, 130, 145, 160])


# ---------------------------------------------------------------- where OCR runs


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
