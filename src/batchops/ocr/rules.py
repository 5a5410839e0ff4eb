"""Ruled tables: the horizontal and vertical lines a statement is drawn with (a boxed header, a full grid, rules
between rows), found on the page image and removed before Tesseract reads it.

A rule is ink in one long straight run: at least RULE_INCHES_H (horizontal) or RULE_INCHES_V (vertical) of
unbroken ink along a row or column of pixels, far longer than any stroke of a letter (morphological line
detection, as table-extraction tools do it: run lengths over a shrunk ink mask instead of an erosion). Left in place, a rule is
read as '|', '_' or '—', glues to a value's edge, joins a header to the row under it, and a full grid breaks
Tesseract's line finding (rows are skipped). Removed, the table reads like an unruled one; where a rule
crossed ink that is also text, the cell is flagged (a glyph under a rule may have lost a stroke).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULE_INCHES_H = 0.8
RULE_INCHES_V = 0.25
MAX_RULE_POINTS = 2.5  # a ruled line is thin; a thicker straight band is a bar or a stroke, left alone
INK_LEVEL = 160  # darker than this is ink for the rule search: a thin rule of a low-resolution scan comes out gray (115-155)


@dataclass
class Rules:
    """The rules found on a page, in pixels of the cleaned image: rows (y) of horizontal rules with their x
    extent, columns (x) of vertical ones with their y extent."""

    horizontal: list[tuple[int, int, int]] = field(default_factory=list)  # (y, x0, x1)
    vertical: list[tuple[int, int, int]] = field(default_factory=list)  # (x, y0, y1)
    crossings: list[tuple[int, int, int, int]] = field(default_factory=list)  # boxes where a rule met other ink

    def kind(self) -> str:
        """What the page is drawn with, for the report: none, horizontal, vertical, grid."""
        if self.horizontal and self.vertical:
            return "grid" if len(self.vertical) >= 3 and len(self.horizontal) >= 3 else "boxed"
        return "horizontal" if self.horizontal else "vertical" if self.vertical else "none"

    def summary(self, dpi: int) -> dict:
        scale = 72.0 / dpi
        return {"kind": self.kind(), "horizontal": len(self.horizontal), "vertical": len(self.vertical),
                "vertical_x_points": [round(x * scale, 1) for x, _, _ in self.vertical]}


def _runs_of(full, shortest: int) -> list[tuple[int, int, int]]:
    """(line, start, stop) of the runs of True at least `shortest` long along each row of a 2-D boolean array."""
    import numpy as np

    padded = np.pad(full, ((0, 0), (1, 1)))
    changes = np.diff(padded.astype(np.int8), axis=1)
    rows, starts = np.nonzero(changes == 1)
    _, stops = np.nonzero(changes == -1)
    keep = (stops - starts) >= shortest
    return list(zip(rows[keep].tolist(), starts[keep].tolist(), stops[keep].tolist(), strict=True))


def _bands(runs: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Runs on neighbouring lines that overlap, grouped: one group per rule (a slightly skewed rule steps
    from line to line along its length)."""
    bands: list[list] = []  # [first line, last line, start, stop, runs]
    for line, start, stop in sorted(runs):
        for band in bands:
            if band[1] >= line - 1 and start < band[3] and stop > band[2]:
                band[1], band[2], band[3] = line, min(band[2], start), max(band[3], stop)
                band[4].append((line, start, stop))
                break
        else:
            bands.append([line, line, start, stop, [(line, start, stop)]])
    return [band[4] for band in bands]


@dataclass(frozen=True)
class _Line:
    """A rule in one direction: across = intercept + slope * along (pixels), from start to stop along it."""

    intercept: float
    slope: float
    start: int
    stop: int
    thickness: float

    def at(self, along: float) -> float:
        return self.intercept + self.slope * along


# Pixels a reduced cell stands for, along the rule; the ink mask is widened across by SKEW_ROWS each side so
# that a rule skewed by up to half a degree (pages are only levelled beyond that) is still one long run.
WINDOW_H, WINDOW_V = 16, 8
SKEW_ROWS = 2


def _lines(mask, window: int, shortest_pixels: float, thickest: int) -> list[_Line]:
    """Rules along the rows of `mask` (a boolean page mask reduced by `window` along the rows)."""
    import numpy as np

    widened = mask.copy()
    for shift in range(1, SKEW_ROWS + 1):
        widened[shift:] |= mask[:-shift]
        widened[:-shift] |= mask[shift:]
    found = []
    for runs in _bands(_runs_of(widened, max(2, int(shortest_pixels / window)))):
        start, stop = min(r[1] for r in runs), max(r[2] for r in runs)
        # rows covering each position along it: a ruled line is thin however skewed; a bar or a block is not
        thickness = sum(r[2] - r[1] for r in runs) / (stop - start) - 2 * SKEW_ROWS
        if thickness > thickest:
            continue
        # every inked cell of the rule is a point on it: the fit spans its whole length
        along = np.concatenate([np.arange(r[1], r[2]) for r in runs]) * window + window / 2
        across = np.concatenate([np.full(r[2] - r[1], r[0], dtype=float) for r in runs])
        slope, intercept = (float(v) for v in np.polyfit(along, across, 1)) if np.ptp(along) > 0 else (
            0.0, float(across.mean()))
        found.append(_Line(intercept, slope, start * window, stop * window, max(1.0, thickness)))
    return found


def find_and_remove_rules(gray, dpi: int):
    """(gray image without its rules, Rules). `gray` is the cleaned page (paper white).

    The ink mask is shrunk along each direction (Pillow's C box reduction): a cell of the shrunk mask that is
    all ink is a stretch of WINDOW pixels of unbroken ink, and a rule is a row (column) of such cells at least
    RULE_INCHES long. Only the shrunk masks are searched, so a page costs milliseconds, not a second. Each
    rule is erased along its fitted line (with its antialiased fringe), so a skewed rule takes no text with it."""
    import numpy as np
    from PIL import Image

    scale = dpi / 300.0
    window_h, window_v = max(4, round(WINDOW_H * scale)), max(2, round(WINDOW_V * scale))
    ink = gray.point(lambda v: 255 if v < INK_LEVEL else 0)
    found = Rules()
    thickest = max(4, round(MAX_RULE_POINTS * dpi / 72))
    width, height = gray.size
    rows = _lines(np.asarray(ink.reduce((window_h, 1))) >= 250, window_h, RULE_INCHES_H * dpi, thickest)
    columns = _lines((np.asarray(ink.reduce((1, window_v))) >= 250).T, window_v, RULE_INCHES_V * dpi, thickest)
    found.horizontal = [(round(r.at((r.start + r.stop) / 2)), r.start, min(width, r.stop)) for r in rows]
    found.vertical = [(round(c.at((c.start + c.stop) / 2)), c.start, min(height, c.stop)) for c in columns]
    if not rows and not columns:
        return gray, found
    pixels = np.asarray(gray).copy()
    fringe = 3  # the rule's antialiased edges too: a gray fringe left behind reads as a dotted line
    erased = np.zeros(pixels.shape, dtype=bool)
    for lines, window, limit, transposed in ((rows, window_h, width, False), (columns, window_v, height, True)):
        for line in lines:  # the rule's whole length: its ends lie in cells not all ink
            along = np.arange(max(0, line.start - window), min(limit, line.stop + window))
            half = int(np.ceil(line.thickness / 2)) + fringe
            centre = np.rint(line.at(along)).astype(int)
            for offset in range(-half, half + 1):
                across = centre + offset
                inside = (across >= 0) & (across < (width if transposed else height))
                if transposed:
                    erased[along[inside], across[inside]] = True
                else:
                    erased[across[inside], along[inside]] = True
    # where a rule meets ink beside it (a stroke of a letter crossing it), that letter may lose the stroke
    outside = (pixels < 128) & ~erased
    touching = np.zeros_like(erased)
    touching[1:] |= outside[:-1] & erased[1:]
    touching[:-1] |= outside[1:] & erased[:-1]
    touching[:, 1:] |= outside[:, :-1] & erased[:, 1:]
    touching[:, :-1] |= outside[:, 1:] & erased[:, :-1]
    ys, xs = np.nonzero(touching)
    if len(ys):
        for y, x in zip(ys[::25].tolist(), xs[::25].tolist(), strict=True):  # a sample is enough to place a box
            found.crossings.append((x - 6, y - 6, x + 6, y + 6))
    pixels[erased] = 255
    return Image.fromarray(pixels, "L"), found
