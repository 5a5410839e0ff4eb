"""Measuring OCR: cell accuracy of BatchOps' layout reader against a naive baseline, on scans with
known truth. Used by tests/test_ocr.py and scripts/ocr_benchmark.py."""

from __future__ import annotations

import time
from pathlib import Path


def cell_accuracy(truth: list[list[str]], read: list[list[str]]) -> float:
    """Exact matches per cell after trimming, row by row; missing or extra rows count as wrong cells."""
    cells = max(len(truth), len(read)) * len(truth[0])
    matches = sum(a.strip() == b.strip() for t, r in zip(truth, read, strict=False) for a, b in zip(t, r, strict=False))
    return matches / cells if cells else 0.0


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
