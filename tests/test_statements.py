"""Statements as banks print them, read by scripts/pdf_to_csv.py: ruled tables and boxed headers, turned
pages, title blocks, page totals and subtotals that must add up, wrapped descriptions, month names and the
amount formats of the `number` setting. Every family of batchops.ocr_eval.FAMILIES is read with no wrong
cell left unflagged; a statement whose printed total does not add up fails the command."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from batchops.numbers import NumberStyle
from batchops.ocr import ColumnRule, pdf_to_table, read_cell
from batchops.ocr.layout import Word, is_monospaced
from batchops.ocr_eval import (
    FAMILIES,
    STATEMENT_DEFAULTS,
    STATEMENT_HEADER,
    cell_accuracy,
    statement_config,
    wrong_cells,
)

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402

SCRIPT = REPO / "scripts" / "pdf_to_csv.py"


def read_family(tmp_path: Path, family: str, rows: int, seed: int = 3, *extra: str, pdf: Path | None = None):
    """Draw a family's statement (unless `pdf` is given), read it with the command and its provider config.
    Returns (completed process, truth, header, body rows, flags, report or None)."""
    spec = FAMILIES[family]
    pdf = pdf or tmp_path / "statement.pdf"
    truth = make_ocr_sample.make_variant(family, pdf, tmp_path / "truth.csv", rows, seed) if not pdf.exists() else []
    env = dict(os.environ)
    if spec.get("schema") == "statement":
        configs = tmp_path / "configs"
        configs.mkdir(exist_ok=True)
        (configs / "_defaults.yaml").write_text(STATEMENT_DEFAULTS)
        (configs / f"statement_{family}.yaml").write_text(statement_config(family))
        env["BATCHOPS_CONFIG_DIR"] = str(configs)
        schema, columns = ["--provider", f"statement_{family}", "--entity", "transactions"], STATEMENT_HEADER
    else:
        schema, columns = ["--provider", "provider_c", "--entity", "transactions"], make_ocr_sample.HEADER
    output = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--input", str(pdf), "--output", str(output), "--flag-column",
                           *schema, *extra], capture_output=True, text=True, env=env)
    report_path = Path(str(output) + ".report.json")
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    if not output.exists():
        return done, truth, columns, [], [], report
    with output.open(newline="") as handle:
        table = list(csv.reader(handle))
    header, body = table[0], table[1:]
    aligned = [[row[header.index(name)] for name in columns] for row in body]
    flags = [row[header.index("_ocr_flags")] for row in body]
    return done, truth, columns, aligned, flags, report


# One page each (two where a figure is carried from page to page): every family, within the CI budget.
ROWS = {"title_totals": 50, "subtotals": 40, "wrapped": 40, "landscape": 36}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_statement_family_is_read_with_no_wrong_cell_unflagged(tmp_path, family):
    done, truth, columns, body, flags, report = read_family(tmp_path, family, ROWS.get(family, 30))
    assert done.returncode == 0, done.stderr
    assert len(body) == len(truth), done.stderr  # exact rows: nothing swallowed by a header, a rule or a total
    wrong, unflagged = wrong_cells(truth, body, flags, columns)
    assert unflagged == 0, (wrong, [(t, r) for t, r in zip(truth, body, strict=True) if t != r][:5])
    assert cell_accuracy(truth, body) >= 0.98, done.stderr
    pages = report["pages"]
    render = FAMILIES[family].get("render", {})
    if render.get("ruling") == "grid":
        assert {p["rules"]["kind"] for p in pages} == {"grid"} and "a ruled grid removed" in done.stderr
    if render.get("turn"):
        assert {p["turned_degrees"] for p in pages} == {(360 - render["turn"]) % 360}
        assert "read upright" in done.stderr
    shape = FAMILIES[family].get("statement", {})
    if shape.get("page_totals") or shape.get("subtotals"):
        checks = report["reconciliation"]
        assert checks and all(c["status"] == "ok" for c in checks), checks
        assert f"printed figures: {len(checks)} of {len(checks)} add up" in done.stderr
    if shape.get("wrap"):
        assert sum(p["wrapped_lines_joined"] for p in pages) > 0


def test_a_boxed_header_keeps_the_first_row_and_adds_no_columns(tmp_path):
    """The first data row under a boxed header was once swallowed with it, the box's sides read as '|'
    columns and the optional channel column came out empty."""
    done, truth, columns, body, _, report = read_family(tmp_path, "boxed_header", 45, seed=2)
    assert done.returncode == 0, done.stderr
    assert body[0] == truth[0] and len(body) == len(truth)
    assert report["extra_columns"] == []
    channel = columns.index("channel")
    assert all(row[channel] for row in body) == all(row[channel] for row in truth)


def test_a_printed_total_that_does_not_add_up_fails_the_command(tmp_path, bad_input):
    """A page total changed on the page (or an amount misread): no CSV unless --no-reconcile, which writes it
    with the page's rows flagged."""
    tampered = tmp_path / "tampered.pdf"
    make_ocr_sample.make_family("title_totals", tampered, tmp_path / "truth.csv", 30, 4, misprint=Decimal(10))
    done, *_ , report = read_family(tmp_path, "title_totals", 30, pdf=tampered)
    assert done.returncode != 0 and not (tmp_path / "out.csv").exists()
    assert "does not add up" in done.stderr and "printed" in done.stderr and "--no-reconcile" in done.stderr
    assert report["reconciliation_failures"]
    bad_input.record("OCR", "a statement whose printed page total differs from its rows by 10.00",
                     done.stderr.strip().splitlines()[-1], kept="no CSV written")
    forced, truth, columns, body, flags, _ = read_family(tmp_path, "title_totals", 30, 4, "--no-reconcile",
                                                         pdf=tampered)
    assert forced.returncode == 0, forced.stderr
    assert body and all("Amount:" in flag for flag in flags)  # every row of the page that does not add up


def test_signs_and_separators_are_never_dropped_silently():
    """A minus after or apart from the digits, or a separator that could be either, is read or refused."""
    amount = ColumnRule(header="Amount", name="amount", type="float")
    trailing = ColumnRule(header="Amount", name="amount", type="float",
                          number=NumberStyle("", ".", (), ("trailing_minus",), True))
    assert read_cell("- 833.24", amount).value == "-833.24"
    assert read_cell("731.53-", trailing).value == "-731.53"
    refused = read_cell("731.53-", amount)
    assert refused.problem and "trailing_minus" in refused.problem
    two_ways = read_cell("48,528", amount)
    assert two_ways.problem and "reads two ways" in two_ways.problem and "number:" in two_ways.problem
    assert read_cell("48,528", ColumnRule(header="Amount", name="amount", type="float",
                                          number=NumberStyle(",", ".", (), ("minus",), True))).value == "48528"


@pytest.mark.parametrize(("raw", "value"), [("01 Ju1 2026", "01 Jul 2026"), ("O1 May 2026", "01 May 2026"),
                                            ("12 Dcc 2025", "12 Dec 2025")])
def test_month_names_are_read_with_confusions_folded_and_spaces_kept(raw, value):
    rule = ColumnRule(header="Date", name="booked_on", type="date", date_format="%d %b %Y")
    reading = read_cell(raw, rule)
    assert reading.value == value and reading.problem is None


def words_of(texts: list[str], width_per_char: dict[str, float]) -> list[Word]:
    words, x = [], 0.0
    for index, text in enumerate(texts):
        width = sum(width_per_char.get(ch, 10.0) for ch in text)
        words.append(Word(text, x, index * 20.0, x + width, index * 20.0 + 14.0, 95.0))
        x += width + 10
    return words


def test_a_monospace_font_is_recognised_by_its_even_widths():
    texts = ["mobile", "store", "Wallet", "illicit", "C0012345", "T123456789", "minimum", "wide"] * 4
    proportional = {"i": 4.0, "l": 4.0, "t": 5.0, "m": 15.0, "w": 14.0, "W": 16.0, "C": 11.0, "T": 10.0}
    assert is_monospaced(words_of(texts, {}))
    assert not is_monospaced(words_of(texts, proportional))
    assert not is_monospaced(words_of(texts[:8], {}))  # too few words to tell


def test_mono_ids_are_read_twice_and_a_disagreement_is_flagged(tmp_path):
    """In a monospace font a dotted zero reads as 6 or 8 with a sure confidence: every id with such a digit
    is read again, and kept unflagged only when both readings agree."""
    pdf = tmp_path / "statement.pdf"
    truth = make_ocr_sample.make_scan(pdf, tmp_path / "truth.csv", 90, 11, font="mono", scan_dpi=150)
    rules_yaml = REPO / "include" / "configs" / "provider_c.yaml"
    assert rules_yaml.exists()
    from batchops.ocr import rules_from_entity
    from batchops.settings import Settings

    from conftest import configs
    rules = rules_from_entity(configs(Settings.from_env(default_home=REPO, env={})).providers["provider_c"]
                              .entities["transactions"])
    result = pdf_to_table(pdf, rules=rules, max_invalid=1.0)
    assert result.report["monospace_font"] is True
    header = [rule.header for rule in rules]
    aligned = [[row[header.index(name)] for name in make_ocr_sample.HEADER] for row in result.rows]
    flags = [flag for flag in result.row_flags]
    assert len(aligned) == len(truth)
    _, unflagged = wrong_cells(truth, aligned, flags, make_ocr_sample.HEADER)
    assert unflagged == 0
    rechecked = [c for c in result.report["flagged_cells"] if "monospace font" in (c["problem"] or "")]
    assert all(c["column"] in ("transaction_id", "customer_id") for c in rechecked)


def test_no_schema_keeps_a_two_word_header_whole_on_reordered_columns(tmp_path):
    """Without a schema, 'customer_id' printed with a wide gap was split into 'customer' and an empty 'id'."""
    pdf = tmp_path / "statement.pdf"
    truth = make_ocr_sample.make_scan(pdf, tmp_path / "truth.csv", 45, 2, column_order=[3, 0, 4, 2, 1])
    result = pdf_to_table(pdf)
    order = [make_ocr_sample.HEADER[i] for i in (3, 0, 4, 2, 1)]
    assert result.columns == order
    assert len(result.rows) == len(truth)
    aligned = [[row[order.index(name)] for name in make_ocr_sample.HEADER] for row in result.rows]
    assert cell_accuracy(truth, aligned) >= 0.99
