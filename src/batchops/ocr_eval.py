"""Measuring OCR: the benchmark's layout variants, cell accuracy and wrong cells against known truth,
and a naive baseline. Used by tests/test_ocr.py and scripts/ocr_benchmark.py."""

from __future__ import annotations

import time
from pathlib import Path

# Layout variants of provider_c's statement the OCR must read (scripts/make_ocr_sample.py draws them).
# "hard" ones (a stamp, heavy noise) must flag every wrong cell or refuse; the rest must be exact.
VARIANTS: dict[str, dict] = {
    "plain": {"render": {}, "about": "the project's own style: sans, header on every page, skew up to 1°"},
    "reordered": {"render": {"column_order": [3, 0, 4, 2, 1]}, "about": "columns in another order than the config"},
    "header_once": {"render": {"header_on_every_page": False}, "about": "the header on page 1 only"},
    "serif": {"render": {"font": "serif"}, "about": "a serif font"},
    "mono": {"render": {"font": "mono"}, "about": "a monospace font"},
    "low_res": {"render": {"scan_dpi": 150}, "about": "scanned at 150 dpi"},
    "rotated": {"render": {"max_skew_degrees": 3.0}, "about": "skewed up to 3°"},
    "blank_middle": {"render": {"blank_page_after": 1}, "about": "a blank page between the table pages"},
    "text_layer": {"render": {"text_layer_pages": "all"}, "about": "a digital PDF with a text layer"},
    "mixed": {"render": {"text_layer_pages": "odd"}, "about": "page 1 digital, page 2 scanned"},
    "no_schema_bold": {"render": {"header_bold": True}, "mode": "no_schema",
                       "about": "bold header, read with --no-schema"},
    "stamp_pen": {"render": {"stamp": True, "pen_stroke": True}, "hard": True,
                  "about": "a PAID stamp and a pen stroke over the table"},
    "heavy_noise": {"render": {"heavy_noise": True}, "hard": True,
                    "about": "heavy speckle, toner dust and JPEG artefacts"},
}


# Statements as banks and providers print them (scripts/make_ocr_sample.py draws them, scripts/ocr_benchmark.py
# reads them). "schema": provider_c (the project's statement) or statement (date, description, reference,
# amount, read by a provider config of its own: number format, date format); "statement" shapes the rows.
FAMILIES: dict[str, dict] = {
    "boxed_header": {"render": {"ruling": "header_box"}, "about": "the header row drawn in a box"},
    "full_grid": {"render": {"ruling": "grid"}, "about": "every cell ruled: a full grid"},
    "horizontal_rules": {"render": {"ruling": "horizontal"}, "about": "a rule between every two rows"},
    "vertical_rules": {"render": {"ruling": "vertical"}, "about": "rules between the columns"},
    "zebra": {"render": {"zebra": True}, "about": "every other row shaded"},
    "landscape": {"render": {"landscape": True, "rows_per_page": 30}, "about": "a landscape page"},
    "sideways": {"render": {"turn": 90}, "about": "a page stored sideways"},
    "upside_down": {"render": {"turn": 180}, "about": "a page stored upside down"},
    "title_totals": {"schema": "statement", "statement": {"title": True, "page_totals": True},
                     "number": {"thousands": ","}, "about": "a title block, and page totals under the table"},
    "subtotals": {"schema": "statement", "statement": {"subtotals": 12, "balances": True},
                  "number": {"thousands": ",", "negative": ["minus"]},
                  "about": "subtotals and balances brought and carried forward inside the table"},
    "wrapped": {"schema": "statement", "statement": {"wrap": 0.35}, "render": {"rows_per_page": 32},
                "about": "descriptions wrapped on two lines"},
    "month_dates": {"schema": "statement", "date_format": "%d %b %Y", "about": "dates printed 01 May 2026"},
    "month_dates_us": {"schema": "statement", "date_format": "%b %d, %Y", "about": "dates printed May 01, 2026"},
    "amount_currency": {"schema": "statement", "number": {"thousands": ",", "currency": ["$"]},
                        "about": "amounts printed $1,234.56"},
    "amount_decimal_comma": {"schema": "statement", "number": {"thousands": ".", "decimal": ","},
                             "about": "amounts printed 1.234,56"},
    "amount_parentheses": {"schema": "statement", "number": {"thousands": ",", "negative": ["minus", "parentheses"]},
                           "statement": {"negatives": 0.3}, "about": "negatives printed (1,234.56)"},
    "amount_trailing_minus": {"schema": "statement", "number": {"negative": ["trailing_minus"]},
                              "statement": {"negatives": 0.3}, "about": "negatives printed 731.53-"},
    "amount_cr_dr": {"schema": "statement", "number": {"thousands": ",", "negative": ["cr_dr"]},
                     "statement": {"negatives": 0.3, "cr_dr": True}, "about": "amounts marked CR and DR"},
    "amount_whole": {"schema": "statement", "number": {"thousands": ","}, "statement": {"whole": True},
                     "about": "whole amounts printed 48,528"},
}
STATEMENT_HEADER = ["Date", "Description", "Reference", "Amount"]


def statement_config(family: str) -> str:
    """The provider config a family's statement is read with (a folder of its own, with _defaults.yaml)."""
    spec = FAMILIES[family]
    number = spec.get("number")
    number_yaml = (", number: {" + ", ".join(f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}"
                                             for key, value in number.items()) + "}") if number else ""
    return (f"provider_id: statement_{family}\nentities:\n  transactions:\n    file: statement.pdf\n"
            f"    format: pdf\n    csv: {{date_format: {spec.get('date_format', '%d.%m.%Y')!r}}}\n    columns:\n"
            "      booked_on: {source: Date, type: date, required: true}\n"
            "      description: {source: Description, type: string}\n"
            "      txn_ref: {source: Reference, type: string, required: true, pattern: 'T\\d{9}'}\n"
            f"      amount: {{source: Amount, type: {'integer' if (spec.get('statement') or {}).get('whole') else 'float'},"
            f" required: true{number_yaml}}}\n")


STATEMENT_DEFAULTS = "owner: ocr_benchmark\npipelines: [propensity_model]\nschedule: null\n"


def cell_accuracy(truth: list[list[str]], read: list[list[str]]) -> float:
    """Exact matches per cell after trimming, row by row; missing or extra rows count as wrong cells."""
    cells = max(len(truth), len(read)) * len(truth[0])
    matches = sum(a.strip() == b.strip() for t, r in zip(truth, read, strict=False) for a, b in zip(t, r, strict=False))
    return matches / cells if cells else 0.0


def wrong_cells(truth: list[list[str]], read: list[list[str]], flags: list[str], columns: list[str]) -> tuple[int, int]:
    """(wrong cells, wrong cells not flagged) of rows compared in order; flags[i] is row i's _ocr_flags
    ('column:kind;...'). A missing or extra row counts all its cells wrong and unflagged."""
    wrong = unflagged = 0
    for index in range(max(len(truth), len(read))):
        if index >= len(truth) or index >= len(read):
            wrong += len(columns)
            unflagged += len(columns)
            continue
        flagged = {part.split(":")[0] for part in flags[index].split(";") if part} if index < len(flags) else set()
        for column, expected, got in zip(columns, truth[index], read[index], strict=True):
            if expected.strip() != got.strip():
                wrong += 1
                unflagged += column not in flagged
    return wrong, unflagged


def naive_read(pdf: Path, header: list[str], dpi: int = 300, psm: int | None = None) -> list[list[str]]:
    """What a quick script does: image_to_string per page, split every line on whitespace. With the default
    page segmentation Tesseract reads a table column by column; psm 6 reads it line by line."""
    import pytesseract
    from pdf2image import convert_from_path

    rows = []
    for image in convert_from_path(str(pdf), dpi=dpi, grayscale=True):
        config = f"--psm {psm}" if psm else ""
        for line in pytesseract.image_to_string(image, config=config).splitlines():
            tokens = line.split()
            if len(tokens) >= 2 and [t.lower() for t in tokens] != [h.lower() for h in header] \
                    and not line.lower().startswith(("page", "provider")):
                rows.append(tokens)
    return rows


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started
