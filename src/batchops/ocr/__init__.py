"""Provider PDFs (scanned or with a text layer) to a validated table.

Each page's words come with their boxes: from the PDF's text layer when the page has one, else from
the page image, cleaned (speckle, deskew) and read by Tesseract. The header line is found by the
text of the schema's source headers, in any order; a page without a header continues the last
header's columns. Every cell is checked by its column's type; a repair may only undo a known OCR
confusion without changing the digits read, anything else is flagged, and a doubtful cell is read
again alone with the column's character whitelist. A page with text but no rows, a missing
required column or a header that cannot be told apart fails loudly: never a short table with success.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchops.ocr.cells import (
    MONO_LOOKALIKES,
    ColumnRule,
    infer_rules,
    is_identifier,
    literal_prefix,
    normalize_cell,
    read_cell,
    rules_from_entity,
)
from batchops.ocr.layout import (
    HeaderCell,
    Layout,
    Word,
    assign_rows,
    best_header_line,
    build_layout,
    data_left,
    edge_outliers,
    find_header,
    group_lines,
    gutters,
    has_content,
    is_footer,
    is_monospaced,
    split_header_marks,
)
from batchops.ocr.pages import (
    LOW_RES_DPI,
    OcrError,
    PageWords,
    extract_scans,
    locate_binaries,
    looks_unreadable,
    page_count,
    page_rotation,
    prepare_image_page,
    render_pages,
    reread_cells,
    scanned_pages,
    tesseract_words,
    text_layer,
    turned_copy,
)
from batchops.ocr.reconcile import (
    amount_rule,
    describe_failure,
    flag_mismatches,
    reconcile,
    reconciliation_failures,
)

__all__ = ["ColumnRule", "OcrError", "OcrErrorWithReport", "OcrResult", "normalize_cell", "pdf_to_table",
           "read_cell", "rules_from_entity"]

CELL_PAD = 1.5  # points around a row's words when a cell is cropped for a second read


class OcrErrorWithReport(OcrError):
    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


@dataclass
class OcrResult:
    columns: list[str]
    rows: list[list[str]]
    report: dict[str, Any]
    row_flags: list[str]  # per row: 'source header:kind;...' for its flagged cells, '' when none


# ---------------------------------------------------------------- reading the pages


PAGES_PER_BATCH = 4  # one Tesseract process (one model load) per batch; small enough for a live progress bar


def read_pages(pdf: Path, pages: list[int], dpi: int, lang: str, binaries: dict[str, str], folder: Path,
               workers: int, done: Callable[[int], None] = lambda pages: None) -> list[PageWords]:
    """Words of every page: text-layer pages from pdftotext, image pages rendered and OCR'd in `workers`
    parallel batches (threads: the work runs in pdftoppm and tesseract subprocesses, and a Celery prefork
    worker, being daemonic, may not start processes of its own)."""
    layer = text_layer(pdf, binaries, pages)
    image_pages = [p for p in pages if p not in layer]
    scans = scanned_pages(pdf, image_pages, binaries) if image_pages else {}
    page_dpi = {p: dpi if p not in scans or scans[p].ppi >= dpi else min(dpi, max(LOW_RES_DPI, round(scans[p].ppi)))
                for p in image_pages}
    batches = _batches(image_pages, page_dpi, workers, PAGES_PER_BATCH)

    def run(batch: list[int]) -> list[PageWords]:
        batch_dpi = page_dpi[batch[0]]
        stored = extract_scans(pdf, [p for p in batch if p in scans], folder, binaries) if scans else {}
        sources = {p: (path, batch_dpi / scans[p].ppi) for p, path in stored.items()}
        for run_pages in _contiguous([p for p in batch if p not in sources]):
            sources.update({p: (path, 1.0) for p, path in render_pages(pdf, run_pages, batch_dpi, folder,
                                                                         binaries).items()})
        prepared = {page: prepare_image_page(path, scale, batch_dpi) for page, (path, scale) in sources.items()}
        ordered = [p for p in batch if p in prepared]
        words = tesseract_words([prepared[p][0] for p in ordered], lang, batch_dpi, binaries["tesseract"])
        read = [PageWords(p, "ocr", w, batch_dpi, prepared[p][0], prepared[p][1], prepared[p][2])
                for p, w in zip(ordered, words, strict=True)]
        return [upright(page, sources[page.page], batch_dpi, lang, binaries["tesseract"]) for page in read]

    read: dict[int, PageWords] = {p: PageWords(p, "text", words) for p, words in layer.items()}
    done(len(pages) - len(image_pages))
    if len(batches) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
            for page_words in pool.map(run, batches):
                read.update({pw.page: pw for pw in page_words})
                done(len(page_words))
    elif batches:
        read.update({pw.page: pw for pw in run(batches[0])})
        done(len(batches[0]))
    return [read.get(p, PageWords(p, "empty")) for p in pages]


def upright(page: PageWords, source: tuple[Path, float], dpi: int, lang: str, tesseract: str) -> PageWords:
    """A page that reads badly is asked which way up it is; one stored sideways or upside down is turned and read
    again (the report says by how much)."""
    if page.image is None or not looks_unreadable(page.words, page.image):
        return page
    degrees = page_rotation(page.image, tesseract)
    if degrees not in (90, 180, 270):
        return page
    path, scale = source
    image, skew, rules = prepare_image_page(turned_copy(path, degrees), scale, dpi)
    words = tesseract_words([image], lang, dpi, tesseract)[0]
    return PageWords(page.page, "ocr", words, dpi, image, skew, rules, degrees)


def _batches(pages: list[int], page_dpi: dict[int, int], workers: int, most: int) -> list[list[int]]:
    """Neighbouring pages in batches of one resolution: as few as `workers` allows, at most `most` pages each."""
    if not pages:
        return []
    size = min(most, -(-len(pages) // max(1, workers)))
    batches: list[list[int]] = []
    for page in pages:
        if batches and len(batches[-1]) < size and page_dpi[batches[-1][0]] == page_dpi[page]:
            batches[-1].append(page)
        else:
            batches.append([page])
    return batches


def _contiguous(pages: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return runs


# ---------------------------------------------------------------- the header without a schema


def discover_header(pdf: Path, pages: list[PageWords]) -> list[str]:
    """Without a schema: the header is the last line of names above the first line with digits, on the
    first page that has one; its words are merged into cells by the data's gutters (a gap the data below
    crosses is inside one column: 'customer' '_id' is one header). Raises when it cannot tell."""
    for page in pages:
        lines = [line for line in group_lines(page.words) if has_content(line) and not is_footer(line)]
        first_data = next((i for i, line in enumerate(lines) if sum(any(c.isdigit() for c in w.text)
                                                                    for w in line) >= 2), None)
        if first_data is None:
            continue
        names = [i for i, line in enumerate(lines[:first_data])
                 if len(line) >= 2 and all(any(c.isalpha() for c in w.text) for w in line)]
        if not names:
            break
        header, data = lines[names[-1]], lines[first_data:]
        return _merge_header_words(pdf, page.page, header, data)
    raise OcrError(f"{pdf}: no header row (a line of column names above the first row of values) was found; "
                   "pass --provider/--entity to read it by its config")


def merge_empty_columns(names: list[str], rows: list[dict[str, Any]], pdf: Path) -> list[str]:
    """Without a schema, a column empty in every row is a header word that belongs to its neighbour ('customer'
    and 'id' of 'customer_id', its values all under the first word): the two names become one. A column
    empty everywhere with no neighbour to join is refused, not written as an empty column."""
    empty = [name for name in names if rows and not any(row["cells"].get(name, {}).get("raw") for row in rows)]
    if not empty:
        return names
    merged = list(names)
    for name in empty:
        index = merged.index(name)
        if index == 0:
            raise OcrError(f"{pdf}: column {name!r} is empty in every row and has no column to its left to belong "
                           "to; pass --provider/--entity to read it by its config")
        left = merged[index - 1]
        merged[index - 1] = f"{left}{'' if name.startswith(('_', '-')) or left.endswith(('_', '-')) else '_'}{name}"
        del merged[index]
    return merged


def _merge_header_words(pdf: Path, page: int, header: list[Word], data: list[list[Word]]) -> list[str]:
    height = statistics.median(w.height for w in header)
    cells: list[list[Word]] = [[header[0]]]
    doubts = []
    for a, b in zip(header, header[1:], strict=False):
        gap = b.left - a.right
        gutter = any(g[1] - g[0] >= 2 for g in gutters(data, a.center_x, b.center_x))
        if gutter and gap >= 0.3 * height:
            cells.append([b])
        elif not gutter and gap <= 1.5 * height:
            cells[-1].append(b)
        else:
            doubts.append(f"{a.text!r} and {b.text!r} ({'a' if gutter else 'no'} gap in the values below, "
                          f"{gap:.0f} pt apart)")
            cells.append([b])
    low = [w.text for w in header if w.confidence < 50]
    if doubts or low or len(cells) < 2 or len(data) < 2:
        reasons = ([f"cannot tell whether {d} are one column or two" for d in doubts]
                   + ([f"header words read with low confidence: {low}"] if low else [])
                   + (["fewer than two columns"] if len(cells) < 2 else [])
                   + (["fewer than two rows of values below it"] if len(data) < 2 else []))
        raise OcrError(f"{pdf}: the table header on page {page} cannot be told with confidence "
                       f"({'; '.join(reasons)}); pass --provider/--entity to read it by its config")
    names = []
    for cell in cells:
        text = cell[0].text
        for a, b in zip(cell, cell[1:], strict=False):
            glued = b.left - a.right < 0.35 * height or a.text.endswith(("_", "-")) or b.text.startswith(("_", "-"))
            text += ("" if glued else " ") + b.text
        names.append(text)
    if len(set(names)) != len(names):
        raise OcrError(f"{pdf}: the table header on page {page} has repeated names {names}; pass --provider/--entity")
    return names


# ---------------------------------------------------------------- pages to rows


def free_text_positions(layout: Layout, by_header: dict[str, ColumnRule]) -> frozenset[int]:
    """Layout positions of columns of free text (a description): where a wrapped second line can only belong."""
    return frozenset(i for i, cell in enumerate(layout.cells) if cell.column is not None
                     and (rule := by_header[cell.column]).type == "string" and not rule.pattern
                     and not rule.allowed_values)


def assemble(pdf: Path, pages: list[PageWords], rules: list[ColumnRule]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of cells from every page, and the structural report. Raises on a missing header or column."""
    headers = [rule.header for rule in rules]
    by_header = {rule.header: rule for rule in rules}
    layout: Layout | None = None
    rows: list[dict[str, Any]] = []
    page_reports = []
    found_header_cells: list[HeaderCell] | None = None
    all_lines: list[list[Word]] = []
    for page in pages:
        lines = group_lines(page.words)
        all_lines += lines
        content = [line for line in lines if has_content(line) and not is_footer(line)]
        header = find_header(lines, headers)
        header_state = "none"
        table = None
        if header is not None:
            index, cells = header
            missing = [r.header for r in rules if r.required and r.header not in {c.column for c in cells}]
            if missing:
                raise OcrErrorWithReport(
                    f"{pdf}: page {page.page}'s header lacks the required column(s) {missing}; searched for "
                    f"{headers} and found {[c.text for c in cells]}; is this the right document and --provider/"
                    "--entity?", {"passed": False, "input": str(pdf)})
            after, header_marks = split_header_marks(lines[index], lines[index + 1:])
            below = [line for line in after if has_content(line) and not is_footer(line)]
            layout = build_layout(cells, below)
            found_header_cells = found_header_cells or cells
            table = assign_rows(after, layout, headers, free_text_positions(layout, by_header))
            table.skipped_lines[:0] = [f"with the header: {text}" for text in header_marks]
            header_state = "found"
        elif layout is not None and content:
            here = data_left(content)
            shift = 0.0 if here is None or layout.data_left is None else here - layout.data_left
            narrowest = min((b - a for a, b in zip(layout.cuts, layout.cuts[1:], strict=False)), default=100.0)
            shifted = layout.shifted(shift if abs(shift) < narrowest / 2 else 0.0)
            table = assign_rows(lines, shifted, headers, free_text_positions(shifted, by_header))
            header_state = "continued"
        first_row = len(rows)
        for number, (cells, (top, bottom)) in enumerate(zip(table.rows if table else [], table.row_boxes if table else [],
                                                            strict=True)):
            row = {"page": page.page, "cells": {}, "unreadable": table.unreadable.get(number)}
            spanned = table.spans.get(number, set())
            for position, header_cell in enumerate(layout.cells):
                if header_cell.column is None:
                    continue
                words = cells[position]
                left = layout.cuts[position - 1] if position > 0 else min([header_cell.left] + [w.left for w in words]) - 8
                right = layout.cuts[position] if position < len(layout.cuts) else max(
                    [header_cell.right] + [w.right for w in words]) + 8
                row["cells"][header_cell.column] = {
                    "raw": " ".join(w.text for w in words),
                    "text_box": (min(w.left for w in words), max(w.right for w in words), top) if words else None,
                    "confidence": round(min((w.confidence for w in words), default=100.0), 1),
                    "box": (max(0.0, left), max(0.0, top - CELL_PAD), right, bottom + CELL_PAD),
                    "spans": position in spanned}
            rows.append(row)
        if table and table.rows:
            status = "table"
        elif not content or (header_state == "found" and len(content) <= 2):
            status = "empty"
        else:
            status = "no_rows"
        page_reports.append({
            "page": page.page, "source": page.source, "dpi": page.dpi, "skew_degrees": page.skew_degrees,
            "rules": page.rules.summary(page.dpi) if page.rules is not None else None,
            "turned_degrees": page.turned_degrees,
            "header": header_state, "rows": len(table.rows) if table else 0, "status": status,
            "words": len(page.words), "gaps": table.gaps if table else [],
            "mean_confidence": round(sum(w.confidence for w in page.words) / len(page.words), 2) if page.words else None,
            "skipped_lines": (table.skipped_lines if table else [" ".join(w.text for w in line) for line in content])[:10],
            "wrapped_lines_joined": table.continued if table else 0,
            "furniture": [{"after_row": first_row + position, "kind": kind, "text": text}
                          for position, kind, text in (table.furniture if table else [])]})
    if found_header_cells is None:
        best = best_header_line(all_lines, headers)
        raise OcrErrorWithReport(
            f"{pdf}: no page has the table header; searched for the source headers {headers}"
            + (f", the closest line found was {best!r}" if best else ", and no line of text was found")
            + "; is this the right document and --provider/--entity?",
            {"passed": False, "input": str(pdf), "pages": page_reports})
    structure = {"pages": page_reports,
                 "header_cells": [{"text": c.text, "column": by_header[c.column].name if c.column else None,
                                   "match": c.score} for c in found_header_cells],
                 "extra_columns": [c.text for c in found_header_cells if c.column is None],
                 "absent_columns": [r.header for r in rules if r.header not in {c.column for c in found_header_cells}]}
    return rows, structure


# ---------------------------------------------------------------- cells


def mark_doubts(rows: list[dict[str, Any]], pages: list[PageWords]) -> None:
    """Cells of scanned pages with a mark over them (a stamp, a pen stroke, a smudge), from the page image:
    much more mid-gray ink per dark ink than the column's other cells on the page (a stamp's tint behind
    the digits), or dark ink beside the text where a clean cell has none (a stroke). Tesseract reads such
    a cell with full confidence and still wrong ('818.78' as '318.78' under a stamp)."""
    import numpy as np
    from PIL import Image

    for page in pages:
        if page.source != "ocr" or page.image is None:
            continue
        with Image.open(page.image) as image:
            pixels = np.asarray(image)
        scale = page.dpi / 72.0
        page_rows = [row for row in rows if row["page"] == page.page]
        for header in {h for row in page_rows for h in row["cells"]}:
            measures = []
            for row in page_rows:
                cell = row["cells"].get(header)
                if not cell or cell.get("box") is None:
                    continue
                x0, y0, x1, y1 = (int(round(v * scale)) for v in cell["box"])
                crop = pixels[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
                dark = int((crop < 80).sum())
                middle = int(((crop >= 80) & (crop < 200)).sum())
                text_box = cell.get("text_box") or (cell["box"][0], cell["box"][0])  # empty: all of it is beside
                left = int(round(text_box[0] * scale)) - x0 - 4
                right = int(round(text_box[1] * scale)) - x0 + 4
                beside = np.concatenate([crop[:, :max(0, left)].ravel(), crop[:, max(0, right):].ravel()])
                measures.append((cell, middle / max(dark, 1) if dark else 0.0, int((beside < 128).sum())))
            if len(measures) < 5:
                continue
            typical = statistics.median(m[1] for m in measures if m[1]) if any(m[1] for m in measures) else 0.0
            stray_limit = 40 * (page.dpi / 300) ** 2
            for cell, ratio, stray in measures:
                if (typical and ratio > 2 * typical) or stray > stray_limit:
                    cell["mark"] = "a mark over the cell (a stamp, a stroke or a smudge): the reading may be affected"


def mark_rule_crossings(rows: list[dict[str, Any]], pages: list[PageWords]) -> None:
    """A cell whose text a removed rule crossed: a stroke of a glyph may have gone with the rule."""
    for page in pages:
        if page.rules is None or not page.rules.crossings:
            continue
        scale = 72.0 / page.dpi
        marks = [(x0 * scale, y0 * scale, x1 * scale, y1 * scale) for x0, y0, x1, y1 in page.rules.crossings]
        for row in rows:
            if row["page"] != page.page:
                continue
            for cell in row["cells"].values():
                box = cell.get("text_box")
                if not box:
                    continue
                left, right, top = box
                bottom = cell["box"][3] if cell.get("box") else top + 12
                if any(x1 >= left and x0 <= right and y1 >= top and y0 <= bottom for x0, y0, x1, y1 in marks):
                    cell.setdefault("mark", "a table rule crossed this value and was removed: a stroke of a digit "
                                            "may have gone with it")


def check_cells(rows: list[dict[str, Any]], rules: list[ColumnRule]) -> None:
    """Each cell checked by its rule; a cell whose text box is off its column's edge is doubtful."""
    misaligned: dict[tuple[int, str], str] = {}
    for rule in rules:
        for page in sorted({row["page"] for row in rows}):
            indexes = [i for i, row in enumerate(rows) if row["page"] == page]
            boxes = [rows[i]["cells"].get(rule.header, {}).get("text_box") for i in indexes]
            cells = [(b[0], b[1], b[2], rows[i]["cells"][rule.header]["raw"]) if b else (0.0, 0.0, 0.0, "")
                     for i, b in zip(indexes, boxes, strict=True)]
            for position, why in edge_outliers(cells).items():
                misaligned[(indexes[position], rule.header)] = why
        for page in sorted({row["page"] for row in rows}):  # a column (nearly) always filled, empty here
            page_rows = [row for row in rows if row["page"] == page]
            filled = sum(bool(row["cells"].get(rule.header, {}).get("raw")) for row in page_rows)
            if len(page_rows) >= 5 and filled >= 0.9 * len(page_rows):
                for row in page_rows:
                    if not row["cells"].get(rule.header, {}).get("raw"):
                        row.setdefault("empty_doubt", set()).add(rule.header)
    for number, row in enumerate(rows):
        for rule in rules:
            cell = row["cells"].setdefault(rule.header, {"raw": "", "confidence": 100.0, "box": None,
                                                          "text_box": None, "spans": False})
            reading = read_cell(cell["raw"], rule)
            problem = reading.problem
            cell["page_value"] = reading.value if reading.problem is None and cell["raw"] else None
            if row.get("unreadable"):
                problem = row["unreadable"]
            elif cell.get("spans"):
                problem = f"one piece of text runs across columns here: {cell['raw']!r}"
            doubt = reading.doubt or misaligned.get((number, rule.header)) or cell.get("mark")
            cell.update(value=reading.value, problem=problem, doubt=doubt, confirmed=False, reread=False)
        # An empty cell in a column filled on nearly every other row, in a row with other trouble (or
        # under a mark): a value may be hidden; a blank in a clean row is a blank.
        troubled = any(c["problem"] or c["doubt"] for c in row["cells"].values())
        for header in row.get("empty_doubt", ()):
            cell = row["cells"][header]
            if troubled and not cell["doubt"] and not cell["problem"]:
                cell["doubt"] = "empty, where this column is filled on nearly every other row: a mark may hide it"


def second_reads(rows: list[dict[str, Any]], rules: list[ColumnRule], pages: list[PageWords], lang: str,
                 tesseract: str, min_confidence: float, workers: int, monospace: bool = False) -> None:
    """Cells that are invalid, doubtful or below min_confidence, read again alone with the column's
    whitelist (one Tesseract call per column, over all pages) and settled by settle_cell. In a monospace
    font (`monospace`) every id holding a 0, 6, 8 or 9 is read again too, and only kept unflagged when
    the second reading agrees: there a dotted or slashed zero reads as 6 or 8 with a sure confidence."""
    by_page = {p.page: p for p in pages if p.source == "ocr"}
    jobs = []
    for rule in rules:  # one Tesseract call per column and kind of crop, over all pages: the model loads once
        prefix = literal_prefix(rule)
        recheck = monospace and is_identifier(rule)
        whole, bodies = {}, {}
        for i, row in enumerate(rows):
            cell = row["cells"][rule.header]
            if row["page"] not in by_page or cell["box"] is None:
                continue
            if not _suspicious(cell, min_confidence):
                if not (recheck and cell["raw"] and MONO_LOOKALIKES & set(cell["value"])):
                    continue
                cell["recheck"] = "monospace"
            page = by_page[row["page"]]
            if prefix and cell["problem"] is None and cell.get("text_box") and cell["value"].startswith(prefix):
                # The prefix is the schema's, and its glyph is what Tesseract doubts ('T' as '7'): read the
                # digits after it alone, with a digits whitelist, and compare those.
                width = (cell["text_box"][1] - cell["text_box"][0]) / len(cell["value"])
                left = cell["text_box"][0] + width * (len(prefix) - 0.15)
                bodies[i] = (page.image, page.dpi, (left, cell["box"][1], cell["box"][2], cell["box"][3]))
            else:
                whole[i] = (page.image, page.dpi, cell["box"])
        if whole:
            jobs.append((rule, whole, rule.whitelist(), ""))
        if bodies:
            jobs.append((rule, bodies, "0123456789", prefix))

    def run(job):
        rule, crops, whitelist, prepend = job
        invalid = {i for i in crops if rows[i]["cells"][rule.header]["problem"]}  # those need two readings to agree
        readings = reread_cells(crops, whitelist, lang, tesseract, twice=invalid)
        return rule, {i: [(prepend + text.replace(" ", ""), conf) if prepend else (text, conf) for text, conf in texts]
                      for i, texts in readings.items()}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rule, readings in pool.map(run, jobs):
            for index, texts in readings.items():
                settle_cell(rows[index]["cells"][rule.header], texts, rule, min_confidence)


def settle_cell(cell: dict[str, Any], texts: list[tuple[str, float]], rule: ColumnRule, min_confidence: float) -> None:
    """Take the second readings of a cell. A low-confidence page value is confirmed by a second reading that
    agrees with at least half the confidence threshold (noise can make every reading wrong the same way,
    each with a low confidence). An invalid page reading is replaced by a valid second reading, confirmed only when both second
    readings agree and one of them is sure; where the page's own reading was a valid value (the cell was
    flagged for its shape, a word running across columns), only agreement with it clears the flag. A
    doubtful repair stays flagged: a second read sees the same speck."""
    valid = [(read_cell(text, rule), text, confidence) for text, confidence in texts]
    valid = [(reading, text, confidence) for reading, text, confidence in valid if reading.problem is None]
    if cell.get("recheck") == "monospace":  # a sure page reading, checked because of the font
        if any(r.value == cell["value"] for r, _, _ in valid):
            cell.update(confirmed=True, reread=True)
        else:
            other = max(valid, key=lambda v: v[2])[0].value if valid else None
            cell.update(reread=True, doubt=(
                f"a monospace font, where 0, 6, 8 and 9 look alike: read {cell['value']!r}, and "
                + (f"{other!r} when read again" if other else "not readable again")))
        return
    if not valid:
        return
    values = [reading.value for reading, _, _ in valid]
    reading, text, confidence = max(valid, key=lambda v: v[2])
    if cell["problem"] is not None:
        page_value = cell.get("page_value")
        if page_value is not None:
            if page_value in values:
                cell.update(value=page_value, problem=None, confirmed=cell["doubt"] is None, reread=True)
            return
        agreed = len(values) >= 2 and len(set(values)) == 1 and confidence >= min_confidence
        prefix = literal_prefix(rule)
        if prefix and not cell["raw"].startswith(prefix):  # the page dropped the prefix, its digits are a reading too
            restored = read_cell(prefix + cell["raw"], rule)
            agreed = agreed or (restored.problem is None and restored.value == reading.value
                                and confidence >= min_confidence)
        # read again under the same mark: still under it; a replacement nothing agrees with is a guess
        doubt = reading.doubt or cell.get("mark") or (None if agreed else (
            f"the page read {cell['raw']!r} (invalid); {text!r} is a single second reading, not confirmed"))
        cell.update(raw=text, value=reading.value, problem=None, doubt=doubt, confidence=round(confidence, 1),
                    reread=True, confirmed=agreed and doubt is None)
    elif not cell["raw"]:  # found where the page read nothing: kept, still flagged as doubtful
        cell.update(raw=text, value=reading.value, confidence=round(confidence, 1), reread=True)
    elif cell["doubt"] is None and any(r.value == cell["value"] and c >= min_confidence / 2 for r, _, c in valid):
        cell["confirmed"] = True  # a second reading agrees, and Tesseract was not guessing in it


def _suspicious(cell: dict[str, Any], min_confidence: float) -> bool:
    return bool(cell["problem"] or cell["doubt"] or (cell["raw"] and cell["confidence"] < min_confidence))


def flag_kind(cell: dict[str, Any], min_confidence: float) -> str | None:
    if cell["problem"]:
        return "invalid"
    if cell["doubt"]:
        return "doubtful_repair"
    if cell["raw"] and cell["confidence"] < min_confidence and not cell["confirmed"]:
        return "low_confidence"
    return None


# ---------------------------------------------------------------- whole document


def pdf_to_table(pdf: Path, rules: list[ColumnRule] | None = None, headers: list[str] | None = None,
                 dpi: int = 300, lang: str = "eng", pages: list[int] | None = None, min_confidence: float = 60.0,
                 max_invalid: float = 0.01, workers: int | None = None, strict_pages: bool = True,
                 progress: Callable[[int], None] = lambda pages: None,
                 page_total: Callable[[int], None] = lambda pages: None, reconcile_figures: bool = True) -> OcrResult:
    """Read a table PDF. Raises OcrError when the PDF is unreadable or has no table header, and
    OcrErrorWithReport when a required column is missing, when a page has text but no rows or a gap in
    its row spacing (unless strict_pages is False: the report's pages_without_rows and row_gaps then say
    which, for the DQ gate), when a printed subtotal, page total or balance does not add up with the amounts
    read (unless reconcile_figures is False or strict_pages is False: the report's reconciliation says), or
    when more than max_invalid of the cells fail validation. `progress` is called with the number of pages
    read as they finish, `page_total` once with the number of pages to read."""
    if not pdf.is_file():
        raise OcrError(f"{pdf} does not exist")
    binaries = locate_binaries(lang)
    total = page_count(pdf, binaries)
    selected = pages or list(range(1, total + 1))
    outside = [p for p in selected if not 1 <= p <= total]
    if outside:
        raise OcrError(f"pages {outside} are outside 1..{total} of {pdf}")
    page_total(len(selected))
    started = time.perf_counter()
    workers = max(1, workers or min(len(selected), os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="batchops-ocr-") as folder:
        page_words = read_pages(pdf, selected, dpi, lang, binaries, Path(folder), workers, progress)
        learned = rules is None
        if learned:
            names = headers or discover_header(pdf, page_words)
            rules = [ColumnRule(header=name, name=name, required=True) for name in names]
        rows, structure = assemble(pdf, page_words, rules)
        if learned:
            merged = merge_empty_columns([r.header for r in rules], rows, pdf)
            if merged != [r.header for r in rules]:  # a header word that was half of its neighbour's name
                rules = [ColumnRule(header=name, name=name, required=True) for name in merged]
                rows, structure = assemble(pdf, page_words, rules)
        if learned:  # shapes learned from the document itself, then every cell checked by them
            rules = infer_rules([r.header for r in rules],
                                [[row["cells"].get(r.header, {"raw": ""})["raw"] for r in rules] for row in rows])
        mark_doubts(rows, page_words)
        mark_rule_crossings(rows, page_words)
        check_cells(rows, rules)
        monospace = is_monospaced([w for p in page_words if p.source == "ocr" for w in p.words])
        second_reads(rows, rules, page_words, lang, binaries["tesseract"], min_confidence, workers, monospace)
        structure["monospace_font"] = monospace
    structure["reconciliation"] = reconcile(rows, structure["pages"], rules)
    flag_mismatches(rows, structure["reconciliation"], amount_rule(rules))
    return _result(pdf, rows, rules, structure, min_confidence, max_invalid, dpi, lang, workers,
                   time.perf_counter() - started, strict_pages, reconcile_figures)


def page_notes(page: dict[str, Any]) -> list[str]:
    """What the reader saw on a page, in words: a turned page, ruling, furniture, wrapped lines."""
    notes = []
    if page.get("turned_degrees"):
        notes.append(f"stored turned {page['turned_degrees']}°, read upright")
    kind = (page.get("rules") or {}).get("kind")
    if kind and kind != "none":
        notes.append({"grid": "a ruled grid", "boxed": "ruled boxes", "horizontal": "horizontal rules",
                      "vertical": "vertical rules"}[kind] + " removed before reading")
    furniture = page.get("furniture") or []
    if furniture:
        kinds = sorted({f["kind"].replace("_", " ") for f in furniture})
        notes.append(f"{len(furniture)} line(s) kept out of the rows ({', '.join(kinds)})")
    if page.get("wrapped_lines_joined"):
        notes.append(f"{page['wrapped_lines_joined']} wrapped line(s) joined to their row")
    return notes


def _invalid_example(flagged: list[dict[str, Any]]) -> str:
    """The most common reason cells fail, with one example value: what to fix, declare or rescan."""
    invalid = [c for c in flagged if c["kind"] == "invalid"]
    if not invalid:
        return ""
    by_column: dict[str, list[dict[str, Any]]] = {}
    for cell in invalid:
        by_column.setdefault(cell["column"], []).append(cell)
    column, cells = max(by_column.items(), key=lambda item: len(item[1]))
    first = cells[0]
    return (f"; most in column {column} ({len(cells)}), e.g. page {first['page']} row {first['row']}: "
            f"{first['raw']!r} {first['problem']}")


def _page_context(page: dict[str, Any]) -> str:
    notes = page_notes(page)
    return f" (the page has {'; '.join(notes)})" if notes else ""


def _result(pdf: Path, rows: list[dict[str, Any]], rules: list[ColumnRule], structure: dict[str, Any],
            min_confidence: float, max_invalid: float, dpi: int, lang: str, workers: int, seconds: float,
            strict_pages: bool, reconcile_figures: bool = True) -> OcrResult:
    columns = [rule.name for rule in rules]
    table, row_flags, flagged = [], [], []
    counts = {"invalid": 0, "doubtful_repair": 0, "low_confidence": 0}
    for number, row in enumerate(rows, start=1):
        values, flags = [], []
        for rule in rules:
            cell = row["cells"][rule.header]
            values.append(cell["value"])
            kind = flag_kind(cell, min_confidence)
            if kind:
                counts[kind] += 1
                flags.append(f"{rule.header}:{kind}")  # named as the CSV's column
                flagged.append({"page": row["page"], "row": number, "column": rule.name, "kind": kind,
                                "raw": cell["raw"], "value": cell["value"], "confidence": cell["confidence"],
                                "problem": cell["problem"] or cell["doubt"]})
        table.append(values)
        row_flags.append(";".join(flags))
    cells = len(table) * len(columns)
    without_rows = [p["page"] for p in structure["pages"] if p["status"] == "no_rows"]
    with_gaps = {p["page"]: p["gaps"] for p in structure["pages"] if p.get("gaps")}
    report = {
        "input": str(pdf), "rows": len(table), "columns": columns, "cells": cells,
        "invalid_cells": counts["invalid"], "doubtful_cells": counts["doubtful_repair"],
        "low_confidence_cells": counts["low_confidence"] + counts["doubtful_repair"],
        "confirmed_cells": sum(c["confirmed"] for row in rows for c in row["cells"].values()),
        "reread_cells": sum(c["reread"] for row in rows for c in row["cells"].values()),
        "min_confidence": min_confidence, "max_invalid": max_invalid, "dpi": dpi, "lang": lang,
        "seconds": round(seconds, 3), "workers": workers,
        "rows_per_page": {str(p["page"]): p["rows"] for p in structure["pages"]},
        "pages_without_rows": without_rows, "row_gaps": with_gaps,
        **structure, "flagged_cells": flagged,
    }
    invalid = counts["invalid"]
    unreconciled = reconciliation_failures(structure.get("reconciliation") or [])
    report["reconciliation_failures"] = [describe_failure(check) for check in unreconciled]
    report["passed"] = (cells > 0 and invalid / cells <= max_invalid and not without_rows and not with_gaps
                        and not unreconciled)
    if without_rows and strict_pages:
        first = next(p for p in structure["pages"] if p["status"] == "no_rows")
        raise OcrErrorWithReport(
            f"{pdf}: page(s) {without_rows} have text but no table rows (page {first['page']} begins "
            f"{(first['skipped_lines'] or [''])[0]!r}); no CSV is written rather than one missing those rows. "
            "If such a page holds no table, leave it out with --pages", report)
    if with_gaps and strict_pages:
        page, gaps = next(iter(with_gaps.items()))
        seen = next(p for p in structure["pages"] if p["page"] == page)
        raise OcrErrorWithReport(
            f"{pdf}: on page {page} {gaps[0]}: a row may not have been read at all{_page_context(seen)}; no CSV is "
            "written rather than one that may be short. Compare that part of the page with the report's "
            "skipped_lines (a stamp, a fold, a line the reader took for a header or a total?) and rescan it or "
            "read the other pages with --pages", report)
    if cells == 0:
        raise OcrErrorWithReport(f"{pdf}: the header was found but no table rows below it", report)
    if unreconciled and strict_pages and reconcile_figures:
        raise OcrErrorWithReport(
            f"{pdf}: the statement does not add up: {report['reconciliation_failures'][0]}"
            + (f" (and {len(unreconciled) - 1} more)" if len(unreconciled) > 1 else "")
            + "; no CSV is written. Check those rows against the page (the report lists the figures), or pass "
              "--no-reconcile to write it with the rows flagged", report)
    if invalid / cells > max_invalid:
        raise OcrErrorWithReport(
            f"{pdf}: {invalid} of {cells} cells fail validation (more than max_invalid {max_invalid:.2%})"
            f"{_invalid_example(flagged)}. See the report's flagged_cells; fix the scan or the column's config, or "
            "raise --max-invalid", report)
    return OcrResult(columns, table, report, row_flags)
