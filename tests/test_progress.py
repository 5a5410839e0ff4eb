"""Progress bars for long commands: drawn for a person at a terminal, silent in CI and logs; the OCR
reports every page it read."""

from __future__ import annotations

import io
import sys

from batchops.ocr import pdf_to_table
from batchops.progress import Steps, wanted

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import make_ocr_sample  # noqa: E402


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_for_a_person_at_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BATCHOPS_PROGRESS", raising=False)
    assert wanted(Terminal()) and not wanted(io.StringIO())  # a log file or a pipe gets no bar
    monkeypatch.setenv("CI", "true")
    assert not wanted(Terminal())
    monkeypatch.delenv("CI")
    monkeypatch.setenv("BATCHOPS_PROGRESS", "0")
    assert not wanted(Terminal())


def test_a_silent_bar_still_counts_nothing_and_breaks_nothing(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with Steps("work", 3) as bar:
        bar.advance()
        bar.describe("more work")
        bar.advance(2)


def test_the_ocr_reports_every_page_it_read(tmp_path):
    pdf = tmp_path / "statement.pdf"
    make_ocr_sample.make_variant("mixed", pdf, tmp_path / "truth.csv", rows=90, seed=3)
    seen = []
    pdf_to_table(pdf, progress=seen.append)
    assert sum(seen) == 2
