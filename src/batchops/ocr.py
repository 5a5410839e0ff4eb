"""Scanned provider PDFs to a validated table, with Tesseract (pytesseract) over Poppler (pdf2image).

The table is read by layout, not by splitting text on spaces: each page is cleaned (speckle
filter, deskew), Tesseract returns word boxes (image_to_data), the header row gives the column
spans, Tesseract's own line numbers give the rows, and every word goes to the column its box
overlaps most. Typed columns (from a provider config or the header alone) repair the usual
confusions (O/0, l/1, S/5, T/7 at an id prefix...) and validate every value; a cell that is still
invalid or below the confidence threshold is read again alone, with a character whitelist.
Pages run in parallel processes with OMP_THREAD_LIMIT=1 (Tesseract's own threads make
page-parallel work several times slower).
"""

from __future__ import annotations

import difflib
import multiprocessing
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from batchops.errors import BatchOpsError

FOOTER = re.compile(r"(?i)\bpage\s*\d+\s*(of|/)\s*\d+\b")
PREFIX_LOOKALIKES = {"T": "71", "I": "1l|", "O": "0", "S": "5", "B": "8", "Z": "2", "G": "6", "C": "(", "A": "4"}
DIGIT_REPAIRS = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "|": "1", "i": "1",
                               "!": "1", "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2", "G": "6", "g": "9"})


class OcrError(BatchOpsError):
    """The PDF could not be read into a table that passes validation."""


# ---------------------------------------------------------------- schema


@dataclass(frozen=True)
class ColumnRule:
    """How to read and check one column, keyed by its header text in the document."""

    header: str
    name: str
    type: str = "string"  # string | integer | float | date | boolean
    pattern: str | None = None
    allowed_values: tuple[str, ...] | None = None
    date_format: str = "%Y-%m-%d"
    required: bool = False

    def whitelist(self) -> str | None:
        """Characters Tesseract may use when this column's cell is read again."""
        if self.type in ("integer", "float"):
            return "0123456789.-"
        if self.type == "date":
            return "0123456789" + "".join(sorted({c for c in self.date_format if not c.isalnum() and c != "%"}))
        if self.allowed_values:
            return "".join(sorted({c for value in self.allowed_values for c in value}))
        if self.pattern:
            letters = "".join(sorted(set(re.findall(r"[A-Za-z]", re.sub(r"\\[a-zA-Z]", "", self.pattern)))))
            return letters + "0123456789"
        return None


def rules_from_entity(entity) -> list[ColumnRule]:
    """ColumnRules from a provider config entity (batchops.config.EntitySpec)."""
    return [ColumnRule(header=spec.source, name=name, type=spec.type, pattern=spec.pattern,
                       allowed_values=tuple(spec.allowed_values) if spec.allowed_values else None,
                       date_format=entity.csv.date_format, required=spec.required)
            for name, spec in entity.columns.items()]


def normalize_cell(raw: str, rule: ColumnRule) -> tuple[str, str | None]:
    """(value, problem): the repaired value and why it is invalid, or None when it is valid."""
    text = raw.strip()
    if text == "":
        return "", ("empty, but the column is required" if rule.required else None)
    if rule.type in ("integer", "float"):
        value = text.replace(" ", "").replace(",", ".").translate(DIGIT_REPAIRS)
        try:
            int(value) if rule.type == "integer" else float(value)
        except ValueError:
            return value, f"not a number: {raw!r}"
        return _check_pattern(value, raw, rule)
    if rule.type == "date":
        value = text.replace(" ", "").translate(DIGIT_REPAIRS)
        try:
            datetime.strptime(value, rule.date_format)
        except ValueError:
            return value, f"not a date in {rule.date_format}: {raw!r}"
        return value, None
    if rule.allowed_values:
        if text in rule.allowed_values:
            return text, None
        close = difflib.get_close_matches(text.lower(), [v.lower() for v in rule.allowed_values], n=1, cutoff=0.75)
        if close:
            return next(v for v in rule.allowed_values if v.lower() == close[0]), None
        return text, f"not one of {list(rule.allowed_values)}: {raw!r}"
    if rule.pattern:
        for candidate in _id_candidates(text.replace(" ", ""), rule.pattern):
            if re.fullmatch(rule.pattern, candidate):
                return candidate, None
        return text, f"does not match {rule.pattern}: {raw!r}"
    return text, None


def _check_pattern(value: str, raw: str, rule: ColumnRule) -> tuple[str, str | None]:
    if rule.pattern and not re.fullmatch(rule.pattern, value):
        return value, f"does not match {rule.pattern}: {raw!r}"
    return value, None


def _id_candidates(text: str, pattern: str) -> list[str]:
    """Repairs of an id: digit confusions after the letter prefix, and a prefix letter misread as a digit
    ('T' as '7' or '17'), using the literal prefix the pattern expects."""
    match = re.match(r"^([A-Za-z]*)(.*)$", text)
    prefix, rest = match.group(1), match.group(2)
    candidates = [text, text.upper(), prefix.upper() + rest.translate(DIGIT_REPAIRS)]
    expected = re.match(r"^\^?([A-Za-z]+)", pattern)
    if expected:
        letters = expected.group(1)
        if text[:len(letters)].upper() == letters.upper():  # 'co000001' -> 'C0000001'
            candidates.append(letters + text[len(letters):].translate(DIGIT_REPAIRS))
        for skip in (1, 2):  # the prefix letter read as digits: 'T' as '7' or '17'
            if len(text) > skip and not text[:skip].isalpha():
                candidates.append(letters + text[skip:].translate(DIGIT_REPAIRS))
    return candidates


# ---------------------------------------------------------------- binaries


def locate_binaries(lang: str) -> dict[str, str]:
    """Tesseract and Poppler from TESSERACT_CMD / POPPLER_PATH or PATH, with the language data."""
    tesseract = os.environ.get("TESSERACT_CMD") or shutil.which("tesseract")
    if not tesseract or not Path(tesseract).exists():
        raise OcrError("the tesseract binary was not found: install the Debian packages tesseract-ocr and "
                       f"tesseract-ocr-{lang} (apt-get install -y tesseract-ocr tesseract-ocr-{lang}) or set TESSERACT_CMD")
    poppler_dir = os.environ.get("POPPLER_PATH")
    pdftoppm = str(Path(poppler_dir) / "pdftoppm") if poppler_dir else shutil.which("pdftoppm")
    if not pdftoppm or not Path(pdftoppm).exists():
        raise OcrError("the Poppler tools (pdftoppm, pdfinfo) were not found: install the Debian package "
                       "poppler-utils (apt-get install -y poppler-utils) or set POPPLER_PATH to their folder")
    languages = subprocess.run([tesseract, "--list-langs"], capture_output=True, text=True).stdout.split()
    if lang not in languages:
        raise OcrError(f"Tesseract has no language data for {lang!r} (has {languages[1:]}): install the Debian "
                       f"package tesseract-ocr-{lang}")
    return {"tesseract": tesseract, "poppler_path": str(Path(pdftoppm).parent)}


def page_count(pdf: Path, poppler_path: str) -> int:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        return int(pdfinfo_from_path(str(pdf), poppler_path=poppler_path)["Pages"])
    except (PDFPageCountError, PDFSyntaxError, KeyError, ValueError) as exc:
        raise OcrError(f"{pdf} is not a readable PDF ({str(exc).strip()[:200]}); ask the provider to resend it") from exc
    except PDFInfoNotInstalledError as exc:
        raise OcrError("pdfinfo is missing: install the Debian package poppler-utils") from exc


# ---------------------------------------------------------------- one page


@dataclass
class Word:
    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float
    line: tuple[int, int, int]

    @property
    def right(self) -> int:
        return self.left + self.width


@dataclass
class PageResult:
    page: int
    seconds: float
    rows: list[list[dict[str, Any]]] = field(default_factory=list)
    header_found: bool = False
    mean_confidence: float | None = None
    words: int = 0


def otsu_threshold(pixels) -> int:
    """The gray level that best separates ink from paper (Otsu)."""
    import numpy as np

    histogram = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight_dark = np.cumsum(histogram)
    weight_light = weight_dark[-1] - weight_dark
    mean_dark = np.cumsum(histogram * levels) / np.maximum(weight_dark, 1)
    mean_light = ((histogram * levels).sum() - np.cumsum(histogram * levels)) / np.maximum(weight_light, 1)
    between = weight_dark * weight_light * (mean_dark - mean_light) ** 2
    return int(np.argmax(between))


def clean_page(image):
    """Grayscale, speckle filter, deskew (projection profile over -1.5..1.5 degrees), then black and white:
    Tesseract's LSTM misreads digits on noisy gray backgrounds that it reads exactly once binarized."""
    import numpy as np
    from PIL import Image, ImageFilter, ImageOps

    gray = ImageOps.grayscale(image).filter(ImageFilter.MedianFilter(3))
    small = gray.reduce(4)
    ink = small.point(lambda v: 255 if v < 160 else 0)
    best_angle, best_score = 0.0, -1.0
    for angle in np.arange(-1.5, 1.55, 0.1):
        profile = np.asarray(ink.rotate(float(angle), fillcolor=0)).sum(axis=1, dtype=np.float64)
        score = float(np.square(np.diff(profile)).sum())
        if score > best_score:
            best_angle, best_score = float(angle), score
    if abs(best_angle) >= 0.05:
        gray = gray.rotate(best_angle, fillcolor=255, resample=Image.BICUBIC)
    pixels = np.asarray(gray)
    return Image.fromarray(np.where(pixels > otsu_threshold(pixels), 255, 0).astype(np.uint8), "L")


def read_words(image, lang: str, tesseract: str) -> list[Word]:
    import pytesseract

    pytesseract.pytesseract.tesseract_cmd = tesseract
    data = pytesseract.image_to_data(image, lang=lang, config="--psm 6", output_type=pytesseract.Output.DICT)
    words = []
    for i, text in enumerate(data["text"]):
        if text.strip() and float(data["conf"][i]) >= 0:
            words.append(Word(text.strip(), data["left"][i], data["top"][i], data["width"][i], data["height"][i],
                              float(data["conf"][i]), (data["block_num"][i], data["par_num"][i], data["line_num"][i])))
    return words


def group_lines(words: list[Word]) -> list[list[Word]]:
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    ordered = sorted(lines.values(), key=lambda ws: min(w.top for w in ws))
    return [sorted(ws, key=lambda w: w.left) for ws in ordered]


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def find_header(lines: list[list[Word]], headers: list[str]) -> tuple[int, list[tuple[int, int]]] | None:
    """(line index, [(left, right) span per header]) of the first line holding most header names."""
    for index, line in enumerate(lines):
        spans = []
        for header in headers:
            parts = header.split()
            match = None
            for start in range(len(line) - len(parts) + 1):
                candidate = " ".join(w.text for w in line[start:start + len(parts)])
                if _similar(candidate, header) >= 0.8:
                    match = (line[start].left, line[start + len(parts) - 1].right)
                    break
            spans.append(match)
        if sum(span is not None for span in spans) >= max(2, int(0.7 * len(headers))):
            return index, spans
    return None


def column_bounds(spans: list[tuple[int, int] | None], page_width: int) -> list[tuple[int, int]]:
    """Each column runs from (just left of) its header to just left of the next header."""
    lefts = [span[0] if span else None for span in spans]
    known = [x for x in lefts if x is not None]
    filled = []
    for i, left in enumerate(lefts):  # a header Tesseract missed sits between its neighbours
        if left is None:
            before = next((lefts[j] for j in range(i - 1, -1, -1) if lefts[j] is not None), 0)
            after = next((lefts[j] for j in range(i + 1, len(lefts)) if lefts[j] is not None), page_width)
            left = (before + after) // 2
        filled.append(left)
    margin = max(10, (min(b - a for a, b in zip(filled, filled[1:], strict=False)) // 6) if len(known) > 1 else 10)
    return [(left - margin, (filled[i + 1] - margin) if i + 1 < len(filled) else page_width)
            for i, left in enumerate(filled)]


def _assign(line: list[Word], bounds: list[tuple[int, int]]) -> list[list[Word]]:
    cells: list[list[Word]] = [[] for _ in bounds]
    for word in line:
        overlaps = [max(0, min(word.right, right) - max(word.left, left)) for left, right in bounds]
        best = max(range(len(bounds)), key=lambda i: overlaps[i])
        if overlaps[best] > 0:
            cells[best].append(word)
    return cells


def reread_cells(image, requests: list[tuple[int, tuple[int, int, int, int]]], rule: ColumnRule,
                 lang: str) -> dict[int, tuple[str, float]]:
    """Read many cells of one column again in a single Tesseract call: their crops stacked into one strip,
    with the column's character whitelist. Returns {request id: (text, confidence)}."""
    import pytesseract
    from PIL import Image

    if not requests:
        return {}
    gap = 40
    crops = [(key, image.crop(box)) for key, box in requests]
    width = max(crop.width for _, crop in crops) + 2 * gap
    strip = Image.new("L", (width, sum(c.height + gap for _, c in crops) + gap), 255)
    offsets, y = [], gap
    for key, crop in crops:
        strip.paste(crop, (gap, y))
        offsets.append((key, y, y + crop.height))
        y += crop.height + gap
    config = "--psm 6"
    whitelist = rule.whitelist()
    if whitelist:
        config += f" -c tessedit_char_whitelist={whitelist}"
    data = pytesseract.image_to_data(strip, lang=lang, config=config, output_type=pytesseract.Output.DICT)
    found: dict[int, list[tuple[int, str, float]]] = {}
    for text, conf, left, top, height in zip(data["text"], data["conf"], data["left"], data["top"], data["height"],
                                             strict=True):
        if not text.strip() or float(conf) < 0:
            continue
        middle = top + height / 2
        for key, start, stop in offsets:
            if start - gap / 2 <= middle <= stop + gap / 2:
                found.setdefault(key, []).append((left, text.strip(), float(conf)))
                break
    return {key: (" ".join(t for _, t, _ in sorted(words)), min(c for _, _, c in words)) for key, words in found.items()}


def ocr_page(pdf: str, page: int, dpi: int, lang: str, rules: list[ColumnRule] | None, headers: list[str] | None,
             min_confidence: float, binaries: dict[str, str]) -> PageResult:
    """Read one page into rows of cells: {column, raw, value, confidence, problem}."""
    from pdf2image import convert_from_path

    started = time.perf_counter()
    image = convert_from_path(pdf, dpi=dpi, first_page=page, last_page=page, grayscale=True,
                              poppler_path=binaries["poppler_path"])[0]
    image = clean_page(image)
    words = read_words(image, lang, binaries["tesseract"])
    result = PageResult(page=page, seconds=0.0, words=len(words),
                        mean_confidence=round(sum(w.confidence for w in words) / len(words), 2) if words else None)
    lines = group_lines(words)
    wanted = [r.header for r in rules] if rules else headers
    header = find_header(lines, wanted) if wanted else None
    if header is None:
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    result.header_found = True
    header_index, spans = header
    bounds = column_bounds(spans, image.width)
    active_rules = rules or [ColumnRule(header=h, name=h) for h in wanted]
    for line in lines[header_index + 1:]:
        text = " ".join(w.text for w in line)
        if FOOTER.search(text) or find_header([line], wanted):
            continue  # page footers and repeated headers are not data
        cells = _assign(line, bounds)
        if sum(bool(c) for c in cells) < max(1, len(bounds) // 2):
            continue  # a stray mark or a caption, not a table row
        top = min(w.top for w in line) - 6
        bottom = max(w.top + w.height for w in line) + 6
        row = []
        for (left, right), rule, cell in zip(bounds, active_rules, cells, strict=True):
            raw = " ".join(w.text for w in cell)
            confidence = min((w.confidence for w in cell), default=100.0 if not raw else 0.0)
            value, problem = normalize_cell(raw, rule)
            row.append({"column": rule.name, "raw": raw, "value": value, "confidence": round(confidence, 1),
                        "problem": problem, "confirmed": False,
                        "box": (max(left, 0), max(top, 0), min(right, image.width), min(bottom, image.height))})
        result.rows.append(row)
    _second_reads(image, result.rows, active_rules, lang, min_confidence)
    for row in result.rows:
        for cell in row:
            cell.pop("box")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _second_reads(image, rows: list[list[dict[str, Any]]], rules: list[ColumnRule], lang: str,
                  min_confidence: float) -> None:
    """Cells that are invalid or below min_confidence are read again with the column's whitelist. An
    invalid cell takes a valid second reading; a low-confidence cell whose second reading agrees is
    confirmed (two independent reads of the same value)."""
    for index, rule in enumerate(rules):
        suspicious = [(row_number, row[index]["box"]) for row_number, row in enumerate(rows)
                      if row[index]["problem"] or (row[index]["raw"] and row[index]["confidence"] < min_confidence)]
        for row_number, (text, confidence) in reread_cells(image, suspicious, rule, lang).items():
            cell = rows[row_number][index]
            value, problem = normalize_cell(text, rule)
            if problem is not None:
                continue
            if cell["problem"] is not None:
                cell.update(raw=text, value=value, problem=None, confidence=round(confidence, 1))
            elif value == cell["value"]:
                cell["confirmed"] = True


def infer_rules(headers: list[str], raw_rows: list[list[str]]) -> list[ColumnRule]:
    """Without a schema, learn each column's shape from its own values (most of them read right):
    an id prefix and length, a date format, two-decimal amounts, or a small set of categories."""
    rules = []
    for index, header in enumerate(headers):
        values = [row[index].strip() for row in raw_rows if index < len(row) and row[index].strip()]
        rules.append(_infer_rule(header, values))
    return rules


def _infer_rule(header: str, values: list[str]) -> ColumnRule:
    from collections import Counter

    if not values:
        return ColumnRule(header=header, name=header)
    majority = 0.8 * len(values)
    ids = Counter((m.group(1), len(m.group(2))) for v in values if (m := re.fullmatch(r"([A-Z]+)(\d+)", v)))
    if ids:
        (prefix, digits), _ = ids.most_common(1)[0]
        lookalikes = {prefix[0], *PREFIX_LOOKALIKES.get(prefix[0], "")}
        consistent = sum(bool(re.fullmatch(rf"[{re.escape(''.join(lookalikes))}]{{1,2}}{prefix[1:]}\d{{{digits}}}", v))
                         for v in values)
        if consistent >= majority:  # e.g. 'T' ids, some of them read as '7...' or '17...'
            return ColumnRule(header=header, name=header, pattern=f"{prefix}\\d{{{digits}}}")
    for shape, date_format in ((r"\d{2}\.\d{2}\.\d{4}", "%d.%m.%Y"), (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"),
                               (r"\d{2}/\d{2}/\d{4}", "%d/%m/%Y")):
        if sum(bool(re.fullmatch(shape, v)) for v in values) >= majority:
            return ColumnRule(header=header, name=header, type="date", date_format=date_format)
    if sum(bool(re.fullmatch(r"-?\d+\.\d{2}", v)) for v in values) >= majority:
        return ColumnRule(header=header, name=header, type="float", pattern=r"-?\d+\.\d{2}")
    counts = Counter(values)
    common = [v for v, n in counts.items() if n >= 2]
    if 0 < len(common) <= 12 and sum(counts[v] for v in common) >= 0.95 * len(values):
        return ColumnRule(header=header, name=header, allowed_values=tuple(sorted(common)))
    return ColumnRule(header=header, name=header)


def _limit_threads() -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"


# ---------------------------------------------------------------- whole document


@dataclass
class OcrResult:
    columns: list[str]
    rows: list[list[str]]
    report: dict[str, Any]


def pdf_to_table(pdf: Path, rules: list[ColumnRule] | None = None, headers: list[str] | None = None,
                 dpi: int = 300, lang: str = "eng", pages: list[int] | None = None, min_confidence: float = 60.0,
                 max_invalid: float = 0.01, workers: int | None = None) -> OcrResult:
    """OCR a table PDF. Raises OcrError when the PDF is unreadable, has no table header, or more than
    max_invalid of the cells fail validation (the report is attached to the error)."""
    if not pdf.is_file():
        raise OcrError(f"{pdf} does not exist")
    binaries = locate_binaries(lang)
    total = page_count(pdf, binaries["poppler_path"])
    selected = pages or list(range(1, total + 1))
    outside = [p for p in selected if not 1 <= p <= total]
    if outside:
        raise OcrError(f"pages {outside} are outside 1..{total} of {pdf}")
    started = time.perf_counter()
    if headers is None and rules is None:
        headers = _headers_from_first_page(pdf, selected[0], dpi, lang, binaries)
    arguments = [(str(pdf), page, dpi, lang, rules, headers, min_confidence, binaries) for page in selected]
    workers = workers or min(len(selected), os.cpu_count() or 1)
    if workers > 1:
        # A Celery prefork worker is a daemonic process, which may not start child processes; the
        # heavy work runs in the tesseract/pdftoppm subprocesses anyway, so threads overlap it too.
        executor = ThreadPoolExecutor if multiprocessing.current_process().daemon else ProcessPoolExecutor
        with executor(max_workers=workers, initializer=_limit_threads) as pool:
            results = list(pool.map(ocr_page, *zip(*arguments, strict=True)))
    else:
        _limit_threads()
        results = [ocr_page(*a) for a in arguments]
    columns = [r.name for r in rules] if rules else list(headers)
    if rules is None:  # shapes learned from the document itself, then every cell normalized by them
        learned = infer_rules(columns, [[c["raw"] for c in row] for r in results for row in r.rows])
        for page_result in results:
            for row in page_result.rows:
                for cell, rule in zip(row, learned, strict=True):
                    cell["value"], cell["problem"] = normalize_cell(cell["raw"], rule)
    rows, flagged = [], []
    for page_result in results:
        for row in page_result.rows:
            rows.append([cell["value"] for cell in row])
            for cell in row:
                if cell["problem"] or (cell["confidence"] < min_confidence and not cell["confirmed"]):
                    flagged.append({"page": page_result.page, "row": len(rows), **cell})
    cells = len(rows) * len(columns)
    invalid = sum(1 for f in flagged if f["problem"])
    report = {
        "input": str(pdf), "rows": len(rows), "columns": columns, "cells": cells, "invalid_cells": invalid,
        "low_confidence_cells": sum(1 for f in flagged if not f["problem"]),
        "confirmed_cells": sum(cell["confirmed"] for r in results for row in r.rows for cell in row),
        "min_confidence": min_confidence, "max_invalid": max_invalid, "dpi": dpi, "lang": lang,
        "seconds": round(time.perf_counter() - started, 3), "workers": workers,
        "pages": [{"page": r.page, "seconds": r.seconds, "rows": len(r.rows), "header_found": r.header_found,
                   "mean_confidence": r.mean_confidence, "words": r.words} for r in results],
        "flagged_cells": flagged,
    }
    if not any(r.header_found for r in results):
        report["passed"] = False
        raise OcrErrorWithReport(f"{pdf}: no page has the table header {columns}; is this the right document "
                                 "and --provider/--entity?", report)
    report["passed"] = cells > 0 and invalid / cells <= max_invalid
    if not report["passed"]:
        raise OcrErrorWithReport(
            f"{pdf}: {invalid} of {cells} cells fail validation (more than max_invalid {max_invalid:.2%}); see the "
            "report's flagged_cells, fix the scan or raise --max-invalid", report)
    return OcrResult(columns, rows, report)


class OcrErrorWithReport(OcrError):
    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _headers_from_first_page(pdf: Path, page: int, dpi: int, lang: str, binaries: dict[str, str]) -> list[str]:
    """Without a schema, the header is the first line of the first page that looks like a table header."""
    from pdf2image import convert_from_path

    image = clean_page(convert_from_path(str(pdf), dpi=dpi, first_page=page, last_page=page, grayscale=True,
                                         poppler_path=binaries["poppler_path"])[0])
    candidate = None
    for line in group_lines(read_words(image, lang, binaries["tesseract"])):
        texts = [w.text for w in line]
        if any(re.search(r"\d", t) for t in texts) and candidate:
            return candidate  # the header is the last line of names above the first row with numbers
        if len(texts) >= 2 and all(re.fullmatch(r"[A-Za-z_]+", t) for t in texts):
            candidate = texts
    raise OcrError(f"{pdf}: no header row (a line of column names) on page {page}; pass --provider/--entity")
