"""Ruled tables: the horizontal and vertical lines a statement is drawn with (a boxed header, a full grid, rules
between rows), found on the page image and removed before Tesseract reads it.

A rule is ink in one long straight run: at least RULE_INCHES_H (horizontal) or RULE_INCHES_V (vertical) of
unbroken ink along a row or column of pixels, far longer than any stroke of a letter (morphological line
detection, as table-extraction tools do it, with run lengths instead of an erosion). Left in place, a rule is
read as '|', '_' or '—', glues to a value's edge, joins a header to the row under it, and a full grid breaks
Tesseract's line finding (rows are skipped). Removed, the table reads like an unruled one; where a rule
crossed ink that is also text, the cell is flagged (a glyph under a rule may have lost a stroke).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULE_INCHES_H = 0.8
RULE_INCHES_V = 0.25
MAX_RULE_POINTS = 2.5  # a ruled line is thin; a thicker straight band is a bar or a stroke, left alone
INK_LEVEL = 96  # darker than this is ink for the rule search: rules are drawn black; a stamp's mid-gray is not a rule


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


def _long_runs(ink, length: int, axis: int):
    """Pixels that lie in a run of at least `length` ink pixels along `axis` (a run-length erosion then
    dilation, by cumulative sums: a few passes over the page, no kernel)."""
    import numpy as np

    moved = np.moveaxis(ink, axis, -1).astype(np.int32)
    width = moved.shape[-1]
    if width < length:
        return np.zeros_like(ink, dtype=bool)
    total = np.concatenate([np.zeros(moved.shape[:-1] + (1,), np.int32), np.cumsum(moved, axis=-1)], axis=-1)
    full = (total[..., length:] - total[..., :-length]) == length  # a window starting here is all ink
    starts = np.concatenate([np.zeros(full.shape[:-1] + (1,), np.int32), np.cumsum(full, axis=-1, dtype=np.int32)],
                            axis=-1)
    covered = np.zeros(moved.shape, dtype=bool)
    ends = np.minimum(np.arange(width) + 1, full.shape[-1])
    begins = np.maximum(np.arange(width) - length + 1, 0)
    covered[...] = (starts[..., ends] - starts[..., begins]) > 0
    return np.moveaxis(covered, -1, axis)


def _spans(mask_1d) -> list[tuple[int, int]]:
    import numpy as np

    padded = np.concatenate([[False], mask_1d, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(changes[::2], changes[1::2], strict=True))


def find_and_remove_rules(gray, dpi: int):
    """(gray image without its rules, Rules). `gray` is the cleaned page (paper white)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(gray)
    ink = pixels < INK_LEVEL
    # a rule drifts by a pixel row over its length on a scan: look for runs in ink thickened by one pixel
    thick_rows = ink.copy()
    thick_rows[1:] |= ink[:-1]
    thick_rows[:-1] |= ink[1:]
    thick_cols = ink.copy()
    thick_cols[:, 1:] |= ink[:, :-1]
    thick_cols[:, :-1] |= ink[:, 1:]
    horizontal = _long_runs(thick_rows, int(RULE_INCHES_H * dpi), axis=1) & ink
    vertical = _long_runs(thick_cols, int(RULE_INCHES_V * dpi), axis=0) & ink
    found = Rules()
    if not horizontal.any() and not vertical.any():
        return gray, found
    thickest = max(4, round(MAX_RULE_POINTS * dpi / 72))
    for mask, axis, target, shortest in ((horizontal, 1, found.horizontal, RULE_INCHES_H * dpi),
                                         (vertical, 0, found.vertical, RULE_INCHES_V * dpi)):
        profile = mask.any(axis=axis)
        for start, stop in _spans(profile):
            band = mask[start:stop] if axis == 1 else mask[:, start:stop]
            extent = np.flatnonzero(band.any(axis=0 if axis == 1 else 1))
            if stop - start > thickest or extent.max() - extent.min() < shortest:
                # not a ruled line: a thick bar, or pieces of a stroke by hand (a wavy pen line): left as ink
                if axis == 1:
                    mask[start:stop] = False
                else:
                    mask[:, start:stop] = False
                continue
            target.append(((start + stop) // 2, int(extent.min()), int(extent.max())))
    if not found.horizontal and not found.vertical:
        return gray, found
    # the rule's antialiased edges too (a gray fringe left behind reads as a dotted line): two pixels around it
    rule = horizontal | vertical
    edge = rule.copy()
    for _ in range(2):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    # where a rule meets ink off its line (a stroke of a letter crossing it), the letter may lose that stroke
    beside = ink & ~edge
    near = np.zeros_like(beside)
    near[2:] |= beside[:-2] & edge[2:]
    near[:-2] |= beside[2:] & edge[:-2]
    near[:, 2:] |= beside[:, :-2] & edge[:, 2:]
    near[:, :-2] |= beside[:, 2:] & edge[:, :-2]
    ys, xs = np.nonzero(near & rule)
    if len(ys):
        order = np.lexsort((xs, ys))
        for y, x in zip(ys[order][::25], xs[order][::25], strict=True):  # a sample is enough to place a box
            found.crossings.append((int(x) - 6, int(y) - 6, int(x) + 6, int(y) + 6))
    cleaned = pixels.copy()
    cleaned[edge] = 255
    return Image.fromarray(cleaned, "L"), found
