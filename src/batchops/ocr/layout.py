"""From a page's words (with boxes) to table rows: pure geometry, no OCR here.

Columns are found by the text of their header cells, in whatever order the page has them; a
column's extent comes from the gutters (x ranges no data word covers) between header cells, so
left-, right- and centre-aligned values all land in their column. A page without a header reuses
the last header's layout, shifted by this page's own margin. Coordinates are PDF points.
"""

from __future__ import annotations

import difflib
import re
import statistics
from dataclasses import dataclass, field

# "Page 2 of 3", also as OCR misreads it ("Pa9e 1 0f 2").
FOOTER = re.compile(r"(?i)p\s*[a4@]\s*[g9q]\s*[ec3]\s*[\dlIoO]+\s*(?:[o0]\s*f|/)\s*[\dlIoOz]+")
# Letters a header's text is compared by: OCR confusions folded, separators dropped.
HEADER_FOLD = str.maketrans({"0": "o", "1": "l", "|": "l", "!": "l", "5": "s", "8": "b", "$": "s"})
HEADER_MATCH = 0.8
HEADER_FOLD_LETTERS = str.maketrans({"0": "o", "1": "l", "|": "l", "5": "s", "8": "b"})


@dataclass
class Word:
    text: str
    left: float
    top: float
    right: float
    bottom: float
    confidence: float = 100.0
    line: tuple[int, int, int] | None = None  # Tesseract's own line, which follows a slight skew

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def center_x(self) -> float:
        return (self.left + self.right) / 2


@dataclass
class HeaderCell:
    text: str
    left: float
    right: float
    column: str | None  # the schema header it matched, None for a column the schema does not know
    score: float = 1.0

    @property
    def center(self) -> float:
        return (self.left + self.right) / 2


@dataclass
class Layout:
    """Columns left to right: cuts[i] is the boundary between cells[i] and cells[i+1]."""

    cells: list[HeaderCell]
    cuts: list[float]
    data_left: float | None = None

    def column_of(self, x: float) -> int:
        for index, cut in enumerate(self.cuts):
            if x < cut:
                return index
        return len(self.cuts)

    def shifted(self, dx: float) -> Layout:
        return Layout([HeaderCell(c.text, c.left + dx, c.right + dx, c.column, c.score) for c in self.cells],
                      [cut + dx for cut in self.cuts], None if self.data_left is None else self.data_left + dx)


@dataclass
class PageTable:
    rows: list[list[list[Word]]] = field(default_factory=list)  # row -> column (layout order) -> words
    row_boxes: list[tuple[float, float]] = field(default_factory=list)  # (top, bottom) per row
    skipped_lines: list[str] = field(default_factory=list)  # content lines that are not table rows
    unreadable: dict[int, str] = field(default_factory=dict)  # row index -> why it could not be read as a row
    spans: dict[int, set[int]] = field(default_factory=dict)  # row index -> columns one word runs across
    gaps: list[str] = field(default_factory=list)  # where the row spacing says a row was not seen at all
    centers: list[float] = field(default_factory=list)  # per row, the median middle of its words
    # statement furniture kept out of the rows: (position among the rows, kind, the line's text)
    furniture: list[tuple[int, str, str]] = field(default_factory=list)
    continued: int = 0  # wrapped lines joined to the row above


# Lines of a statement that are not rows: running totals and balances, and what a footer block says.
FURNITURE = re.compile(
    r"(?i)\b(?:(?P<subtotal>sub[\s-]*total)|(?P<page_total>page\s*total|total\s+(?:this|of\s+this)\s+page)"
    r"|(?P<brought_forward>(?:balance\s+)?b(?:rought|/)\s*f(?:orward|wd)?\b|opening\s+balance|balance\s+b/?f)"
    r"|(?P<carried_forward>(?:balance\s+)?c(?:arried|/)\s*f(?:orward|wd)?\b|closing\s+balance|balance\s+c/?f)"
    r"|(?P<total>\btotals?\b))")


def furniture_kind(text: str) -> str | None:
    """subtotal, page_total, brought_forward, carried_forward or total when the line is one of those."""
    match = FURNITURE.search(text.translate(HEADER_FOLD_LETTERS))
    return next((kind for kind, value in match.groupdict().items() if value), None) if match else None


def group_lines(words: list[Word]) -> list[list[Word]]:
    """Words into text lines, top to bottom, each sorted left to right: by Tesseract's line numbers when
    it gave them, else (a text layer) by vertical overlap."""
    if words and all(w.line is not None for w in words):
        keyed: dict[tuple[int, int, int], list[Word]] = {}
        for word in words:
            keyed.setdefault(word.line, []).append(word)
        ordered = sorted(keyed.values(), key=lambda ws: statistics.median(w.top for w in ws))
        return [sorted(line, key=lambda w: w.left) for line in ordered]
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: (w.top + w.bottom) / 2):
        middle = (word.top + word.bottom) / 2
        if lines:
            last = lines[-1]
            top = statistics.median(w.top for w in last)
            bottom = statistics.median(w.bottom for w in last)
            if top <= middle <= bottom:
                last.append(word)
                continue
        lines.append([word])
    return [sorted(line, key=lambda w: w.left) for line in lines]


def fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().translate(HEADER_FOLD))


def similarity(a: str, b: str) -> float:
    a, b = fold(a), fold(b)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def match_header(line: list[Word], headers: list[str]) -> list[HeaderCell]:
    """Header cells of one line: each schema header matched (fuzzily, OCR confusions folded) to a run of
    adjacent words; words no header claims become cells of unknown columns."""
    candidates = []
    for header in headers:
        most = len(header.split()) + 2  # 'customer_id' may come as 'customer' '_id'
        for start in range(len(line)):
            for stop in range(start + 1, min(len(line), start + most) + 1):
                run = line[start:stop]
                if stop - start > 1 and _has_column_gap(run):
                    break
                score = similarity("".join(w.text for w in run), header)
                if score >= HEADER_MATCH:
                    candidates.append((score, -abs(len(fold(header)) - len(fold("".join(w.text for w in run)))),
                                       header, start, stop))
    taken: set[int] = set()
    matched: dict[str, HeaderCell] = {}
    for score, _, header, start, stop in sorted(candidates, reverse=True):
        if header in matched or any(i in taken for i in range(start, stop)):
            continue
        taken.update(range(start, stop))
        run = line[start:stop]
        matched[header] = HeaderCell(" ".join(w.text for w in run), run[0].left, run[-1].right, header, round(score, 3))
    cells = list(matched.values())
    cells += [HeaderCell(" ".join(w.text for w in run), run[0].left, run[-1].right, None, 0.0)
              for run in _runs([w for i, w in enumerate(line) if i not in taken])]
    return sorted(cells, key=lambda c: c.left)


def _has_column_gap(run: list[Word]) -> bool:
    height = statistics.median(w.height for w in run)
    return any(b.left - a.right > 1.2 * height for a, b in zip(run, run[1:], strict=False))


def _runs(words: list[Word]) -> list[list[Word]]:
    """Adjacent words (gap below a word's height) as one cell."""
    runs: list[list[Word]] = []
    for word in sorted(words, key=lambda w: w.left):
        if runs and word.left - runs[-1][-1].right < word.height:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def find_header(lines: list[list[Word]], headers: list[str]) -> tuple[int, list[HeaderCell]] | None:
    """(line index, cells) of the line matching most schema headers: at least two, and at least half."""
    best = None
    needed = max(2, (len(headers) + 1) // 2) if len(headers) > 1 else 1
    for index, line in enumerate(lines):
        cells = match_header(line, headers)
        known = sum(c.column is not None for c in cells)
        if known >= needed and (best is None or known > best[0]):
            best = (known, index, cells)
            if known == len(headers):
                break
    return None if best is None else (best[1], best[2])


def best_header_line(lines: list[list[Word]], headers: list[str]) -> str | None:
    """The line that looks most like the header, for a message when none is good enough."""
    scored = [(sum(c.column is not None for c in match_header(line, headers)), " ".join(w.text for w in line))
              for line in lines if len(line) >= 2]
    scored = [s for s in scored if s[0] > 0] or [(0, text) for _, text in scored if not re.search(r"\d", text)]
    return max(scored, key=lambda s: s[0])[1] if scored else None


def gutters(lines: list[list[Word]], left: float, right: float) -> list[tuple[float, float]]:
    """X ranges in [left, right] that (almost) no word of these lines covers, widest first."""
    if not lines:
        return []
    step = 1.0
    size = int((right - left) / step) + 1
    coverage = [0] * size
    for line in lines:
        for word in line:
            for i in range(max(0, int((word.left - left) / step)), min(size, int((word.right - left) / step) + 1)):
                coverage[i] += 1
    allowed = max(1, len(lines) // 20)  # a speck or a stray word may cross a gutter
    found, start = [], None
    for i, covered in enumerate(coverage + [allowed + 1]):
        if covered <= allowed and start is None:
            start = i
        elif covered > allowed and start is not None:
            found.append((left + start * step, left + i * step))
            start = None
    return sorted(found, key=lambda g: g[0] - g[1])


def build_layout(cells: list[HeaderCell], data_lines: list[list[Word]]) -> Layout:
    """Cut between neighbouring header cells in the widest gutter of the data between their centres;
    without data there, just left of the right-hand header."""
    cuts = []
    for a, b in zip(cells, cells[1:], strict=False):
        between = [g for g in gutters(data_lines, a.center, b.center) if g[1] - g[0] >= 2]
        if between:
            cuts.append((between[0][0] + between[0][1]) / 2)
        else:
            cuts.append(max(a.right, b.left - 0.25 * (b.left - a.right)) if b.left > a.right else b.left)
    return Layout(cells, cuts, data_left(data_lines))


def data_left(lines: list[list[Word]]) -> float | None:
    starts = [line[0].left for line in lines if line]
    return statistics.median(starts) if starts else None


def is_footer(line: list[Word]) -> bool:
    return bool(FOOTER.search(" ".join(w.text for w in line)))


def has_content(line: list[Word], min_confidence: float = 30.0) -> bool:
    """A line with something legible: not a speck or a smudge Tesseract turned into a stray glyph."""
    return any(sum(c.isalnum() for c in w.text) >= 2 and w.confidence >= min_confidence for w in line)


def split_header_marks(header: list[Word], lines: list[list[Word]]) -> tuple[list[list[Word]], list[str]]:
    """(lines below the header, texts of lines that belong to the header): a line whose middle is less than
    a header line's height below the header's middle is its underline or a rule Tesseract read as glyphs
    ('Ne EO Ee'), not a row."""
    height = statistics.median(w.height for w in header)
    middle = statistics.median((w.top + w.bottom) / 2 for w in header)
    kept, marks = [], []
    for line in lines:
        if statistics.median((w.top + w.bottom) / 2 for w in line) - middle < 0.9 * height:
            marks.append(" ".join(w.text for w in line))
        else:
            kept.append(line)
    return kept, marks


def _legible(word: Word) -> bool:
    return any(c.isalnum() for c in word.text)


def assign_rows(lines: list[list[Word]], layout: Layout, headers: list[str],
                free_text: frozenset[int] = frozenset()) -> PageTable:
    """Every line below the header to a row of cells, unless it is a footer, a repeated header or statement
    furniture (a subtotal, a balance brought or carried forward, a page total: kept apart in
    table.furniture). A line whose only words lie in free-text columns (`free_text`, layout positions), right
    under a row, is that row's wrapped text and joins it. A line too sparse to be a row (fewer than half of
    the known columns legible) is a row all the same when it lies between table rows, marked unreadable, so
    the table never comes out a row short; above the first row or below the last it is reported in
    skipped_lines (a caption, a total)."""
    table = PageTable()
    known = [i for i, c in enumerate(layout.cells) if c.column is not None]
    pending: list[tuple[list[list[Word]], tuple[float, float], str]] = []  # sparse lines after the last row
    accounted: list[float] = []  # middles of furniture and wrapped lines: not missing rows
    for line in lines:
        if is_footer(line) or not has_content(line):
            continue
        if headers and sum(c.column is not None for c in match_header(line, headers)) >= max(2, len(known) // 2):
            continue  # the header repeated on this page
        cells: list[list[Word]] = [[] for _ in layout.cells]
        spanned: set[int] = set()
        for word in line:
            column = layout.column_of(word.center_x)
            cells[column].append(word)
            first, last = layout.column_of(word.left + 0.1 * word.height), layout.column_of(word.right - 0.1 * word.height)
            if _legible(word) and first != last:
                spanned.update(range(first, last + 1))
        text = " ".join(w.text for w in line)
        box = (min(w.top for w in line), max(w.bottom for w in line))
        middle = statistics.median((w.top + w.bottom) / 2 for w in line)
        filled = [i for i, words in enumerate(cells) if any(_legible(w) for w in words)]
        kind = furniture_kind(text) if len(filled) <= max(2, len(known) // 2) else None  # not a full row
        if kind:
            table.furniture.append((len(table.rows), kind, text))
            accounted.append(middle)
            continue
        if free_text and table.rows and not pending and filled and set(filled) <= free_text \
                and len(filled) < max(1, (len(known) + 1) // 2) \
                and box[0] - table.row_boxes[-1][1] < 1.2 * (box[1] - box[0]):
            for position in filled:  # the row above's wrapped text
                table.rows[-1][position] = table.rows[-1][position] + cells[position]
            table.row_boxes[-1] = (table.row_boxes[-1][0], box[1])
            table.continued += 1
            accounted.append(middle)
            continue
        if sum(any(_legible(w) for w in cells[i]) for i in known) < max(1, (len(known) + 1) // 2):
            pending.append((cells, box, text))
            continue
        for cells_before, box_before, text_before in pending if table.rows else []:
            table.unreadable[len(table.rows)] = f"a line between rows could not be read as a row: {text_before!r}"
            table.rows.append(cells_before)
            table.row_boxes.append(box_before)
            table.centers.append((box_before[0] + box_before[1]) / 2)
        if not table.rows:
            table.skipped_lines += [t for _, _, t in pending]
        pending = []
        if spanned:
            table.spans[len(table.rows)] = spanned
        table.rows.append(cells)
        table.row_boxes.append(box)
        table.centers.append(middle)
    table.skipped_lines += [t for _, _, t in pending]
    # A line whose words are much taller than a row's (a stamp's lettering over several rows) is no evidence
    # of one row: its middle would fill the place of a row Tesseract never saw under it, so it is left out of
    # the spacing check (its cells are checked like any row's and flagged when they do not read).
    word_heights = [statistics.median(w.height for cell in row for w in cell) if any(row) else 0.0
                    for row in table.rows]
    usual = statistics.median(word_heights) if word_heights else 0.0
    evidence = [center for center, height in zip(table.centers, word_heights, strict=True)
                if not usual or height <= TALL_LINE * usual]
    for index, height in enumerate(word_heights):
        if usual and height > TALL_LINE * usual:
            table.unreadable.setdefault(index, f"lettering {height / usual:.1f} times a row's height lies over the "
                                               "table here (a stamp?): its text is not a row's")
    table.gaps = row_gaps(sorted(evidence + accounted))
    return table


TALL_LINE = 1.6  # words this many times a row's usual height are a mark over rows, not a row


def row_gaps(centers: list[float]) -> list[str]:
    """Where consecutive rows are about two row pitches apart: a row Tesseract did not see at all.
    Rows are placed by the median middle of their words, which a stray mark in a row does not move."""
    if len(centers) < 4:
        return []
    steps = [b - a for a, b in zip(centers, centers[1:], strict=False)]
    pitch = statistics.median(steps)
    return [f"between rows {i + 1} and {i + 2} of the page the spacing is {step / pitch:.1f} rows"
            for i, step in enumerate(steps) if pitch > 0 and step > 1.7 * pitch]


def _theil_sen(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of x over y, robust to a few outliers: the column edge drifts with skew."""
    slopes = [(x2 - x1) / (y2 - y1) for i, (y1, x1) in enumerate(points) for y2, x2 in points[i + 1:] if y2 != y1]
    slope = statistics.median(slopes) if slopes else 0.0
    intercept = statistics.median(x - slope * y for y, x in points)
    return intercept, slope


def edge_outliers(cells: list[tuple[float, float, float, str]]) -> dict[int, str]:
    """Cells of one column on one page, as (left, right, top, text), whose text box is off an edge the
    column keeps straight by more than half a character: a glyph under a stamp or a stroke that
    Tesseract dropped ('1662.19' read as '662.19' starts one digit late). An edge counts as straight when
    nine in ten cells sit on it (after a fit that follows the page's skew): the left edge of a
    left-aligned column, both edges of fixed-width values like ids and dates. Returns {index: why}."""
    present = [(i, c) for i, c in enumerate(cells) if c[3]]
    if len(present) < 5:
        return {}
    char = statistics.median((c[1] - c[0]) / max(1, len(c[3].replace(" ", ""))) for _, c in present)
    found: dict[int, str] = {}
    for side, position in (("left", 0), ("right", 1)):
        intercept, slope = _theil_sen([(c[2], c[position]) for _, c in present])
        residuals = {i: c[position] - (intercept + slope * c[2]) for i, c in present}
        off = sum(abs(r) > 0.3 * char for r in residuals.values())
        if off > max(1, len(present) // 10):
            continue  # this edge is ragged by design (left-aligned amounts have ragged right edges)
        for i, r in residuals.items():
            if abs(r) > 0.6 * char and i not in found:
                found[i] = f"its {side} edge is {abs(r) / char:.1f} characters off the column's: a character may be missing"
    return found


# Width per character over height, across a page's words: in a proportional font 'i' and 'm' differ,
# so words spread by 13-15% between the first and last tenth; in a monospace font by 3-4%.
MONOSPACE_SPREAD = 0.08
MONOSPACE_MIN_WORDS = 20


def is_monospaced(words: list[Word]) -> bool:
    """Whether the words were printed in a monospace font: every sure word of four characters or more
    has the same width per character (relative to its height), within MONOSPACE_SPREAD."""
    sure = [w for w in words if len(w.text) >= 4 and w.confidence >= 80 and w.height > 0]
    if len(sure) < MONOSPACE_MIN_WORDS:
        return False
    height = statistics.median(w.height for w in sure)
    ratios = sorted((w.right - w.left) / len(w.text) / height for w in sure)
    tenth = len(ratios) // 10
    return (ratios[-tenth - 1] - ratios[tenth]) / statistics.median(ratios) <= MONOSPACE_SPREAD
