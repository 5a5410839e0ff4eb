"""One cell's text to a checked value: the usual OCR confusions are repaired only where the repair
keeps every digit that was read, in its place; anything else is flagged, never silently changed."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from batchops.numbers import NumberStyle, parse_number

# Glyphs Tesseract reads for a digit. Translated one for one, so digit count and order never change.
DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "|": "1", "i": "1",
                                  "!": "1", "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2", "G": "6", "g": "9"})
# What an id's letter prefix is misread as ('T' as '7' or '17').
PREFIX_LOOKALIKES = {"T": ("7", "17", "1"), "I": ("1", "l", "|"), "O": ("0",), "S": ("5",), "B": ("8",),
                     "Z": ("2",), "G": ("6",), "C": ("(", "€", "¢"), "A": ("4",)}
# Debris: punctuation a scan leaves at the edge of a value (dust, a rule line, a stamp's edge).
EDGE_DEBRIS = ".,;:'\"`|_~-=*°^—–+«»"


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
    number: NumberStyle = NumberStyle()

    def whitelist(self) -> str | None:
        """Characters Tesseract may use when this column's cell is read again."""
        if self.type in ("integer", "float"):
            marks = {self.number.thousands, self.number.decimal, "-"} | set("".join(self.number.currency))
            if "parentheses" in self.number.negative:
                marks |= {"(", ")"}
            if "cr_dr" in self.number.negative:
                marks |= set("CDR")
            return "0123456789" + "".join(sorted(m for m in marks if m and m != " "))
        if self.type == "date" and any(code in self.date_format for code in ("%b", "%B")):
            return None  # month names: letters too
        if self.type == "date":
            return "0123456789" + "".join(sorted({c for c in self.date_format if not c.isalnum() and c != "%"}))
        if self.allowed_values:
            return "".join(sorted({c for value in self.allowed_values for c in value}))
        if self.pattern:
            letters = "".join(sorted(set(re.findall(r"[A-Za-z]", re.sub(r"\\[a-zA-Z]", "", self.pattern)))))
            return letters + "0123456789"
        return None


@dataclass(frozen=True)
class CellReading:
    """value: what goes to the table; problem: why it is invalid (None when valid); doubt: why a valid
    value is still not trusted (a repair that could have invented it), None when it is a plain reading."""

    value: str
    problem: str | None = None
    doubt: str | None = None


def literal_prefix(rule: ColumnRule) -> str:
    """The letters every value of an id column starts with ('T' for T\\d{9}), '' when there are none."""
    if not rule.pattern or rule.type != "string" or rule.allowed_values:
        return ""
    match = re.match(r"^\^?([A-Za-z]+)(?=\\d|\[0-9\])", rule.pattern)
    return match.group(1) if match else ""


# Digits a monospace font's dotted or slashed zero is read as, and the zero itself.
MONO_LOOKALIKES = frozenset("0689")


def is_identifier(rule: ColumnRule) -> bool:
    """An id column: a string of a fixed shape with digits in it (C\\d{7}, \\d{10}), where one wrong
    digit is another customer, not a slightly wrong value."""
    return rule.type == "string" and not rule.allowed_values and bool(rule.pattern) and (
        "\\d" in rule.pattern or "[0-9]" in rule.pattern)


def rules_from_entity(entity) -> list[ColumnRule]:
    """ColumnRules from a provider config entity (batchops.config.EntitySpec)."""
    return [ColumnRule(header=spec.source, name=name, type=spec.type, pattern=spec.pattern,
                       allowed_values=tuple(spec.allowed_values) if spec.allowed_values else None,
                       date_format=entity.csv.date_format, required=spec.required, number=NumberStyle.of(spec))
            for name, spec in entity.columns.items()]


def strip_debris(text: str, numeric: bool) -> str:
    """Drop whitespace-separated tokens with no letter or digit at either edge ('963.83 .', '- 2026-07-18'),
    and, for numbers, dates and ids, punctuation stuck to the edges ('963.83.', ':2026-07-18'); a leading
    minus touching a digit stays, and '|' stays (it may be a 1, which the caller flags as doubtful)."""
    tokens = text.split()
    while tokens and not any(c.isalnum() for c in tokens[0]):
        tokens.pop(0)
    while tokens and not any(c.isalnum() for c in tokens[-1]):
        tokens.pop()
    core = " ".join(tokens)
    if numeric:
        core = core.rstrip(EDGE_DEBRIS.replace("|", ""))
        negative = re.match(r"^-\d", core) is not None
        core = core.lstrip(EDGE_DEBRIS.replace("|", ""))
        if negative:
            core = "-" + core
    return core


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def normalize_cell(raw: str, rule: ColumnRule) -> tuple[str, str | None]:
    """(value, problem) of read_cell, for callers that do not need the doubt."""
    reading = read_cell(raw, rule)
    return reading.value, reading.problem


def read_cell(raw: str, rule: ColumnRule) -> CellReading:
    """Check and repair one cell's text by its column's rule."""
    if rule.type in ("integer", "float"):
        return _read_number(raw, rule)
    numeric = rule.type == "date"
    text = strip_debris(raw.strip(), numeric or bool(rule.pattern and not rule.allowed_values))
    if text == "":
        return CellReading("", "empty, but the column is required" if rule.required else None)
    if numeric:
        return _read_date(raw, text, rule)
    if rule.allowed_values:
        if text in rule.allowed_values:
            return CellReading(text)
        close = difflib.get_close_matches(text.lower(), [v.lower() for v in rule.allowed_values], n=1, cutoff=0.75)
        if close:
            return CellReading(next(v for v in rule.allowed_values if v.lower() == close[0]))
        return CellReading(text, f"not one of {list(rule.allowed_values)}: {raw!r}")
    if rule.pattern:
        return _read_id(raw, text, rule.pattern)
    return CellReading(text)


# Characters that mean something in a number (a sign, a separator, a currency mark): never dropped silently.
def _meaningful(token: str, style: NumberStyle) -> bool:
    return any(c.isalnum() for c in token) or token in ("-", "(", ")") or token in style.currency


def _read_number(raw: str, rule: ColumnRule) -> CellReading:
    """A number by the column's declared format (batchops.numbers). Specks at the edges are dropped, but a
    character that could be part of the value (a sign, a separator) is never dropped or reinterpreted
    without flagging the cell; lookalike letters become digits only where every digit read keeps its place."""
    style = rule.number
    text = raw.strip()
    tokens = text.split()
    dropped = []
    while tokens and not _meaningful(tokens[0], style):
        dropped.append(tokens.pop(0))
    while tokens and not _meaningful(tokens[-1], style):
        dropped.append(tokens.pop())
    text = " ".join(tokens)
    # '|' stays: it may be a 1, and the lookalike repair below flags it
    debris = "".join(c for c in EDGE_DEBRIS if c not in "-.,()|" and c not in "".join(style.currency))
    core = text.strip(debris)
    lost = []  # separators dropped where a digit may have been lost with them
    while core[:1] in (".", ","):  # a separator with no digit before it: a speck, or a lost digit
        lost.append(core[0])
        core = core[1:]
    while core[-1:] in (".", ","):
        if style.decimal not in core[:-1]:  # '963.' may have lost its decimals; '963.83.' lost nothing
            lost.append(core[-1])
        core = core[:-1]
    if core == "":
        problem = "empty, but the column is required" if rule.required else None
        return CellReading("", problem if not (dropped or lost) else f"only {raw!r} was read")
    doubt = None
    trailing = [t for t in dropped if any(c in ".," for c in t)]
    if lost or (trailing and style.decimal not in core):
        doubt = f"dropped {' '.join(lost + trailing)!r} at the edge, where a digit may have been: {raw!r}"
    head, body, tail = _split_marks(core, style)
    digits = body.translate(DIGIT_LOOKALIKES)
    if body[:1] != digits[:1] or body[-1:] != digits[-1:]:
        doubt = doubt or f"a mark at the edge read as a digit: {raw!r}"  # '|2.50' may be '12.50' or a rule line
    if " " in digits.strip() and style.thousands != " " and re.search(r"\d\s+[\d.,]|[\d.,]\s+\d", digits):
        digits = re.sub(r"(?<=[\d.,])\s+(?=[\d.,])", "", digits)
        doubt = doubt or f"pieces joined into one value: {raw!r}"  # a speck beside a number reads as a digit
    if re.match(r"^-\s+\d", head + digits) and not style.declared:
        doubt = doubt or f"a minus apart from the digits: {raw!r}"
    parsed = parse_number(head + digits + tail, style, integer=rule.type == "integer")
    if parsed.value is None:
        return CellReading(core, f"{parsed.problem}: {raw!r}")
    if rule.pattern and not re.fullmatch(rule.pattern, parsed.value):
        return CellReading(parsed.value, f"does not match {rule.pattern}: {raw!r}")
    return CellReading(parsed.value, None, doubt)


def _split_marks(text: str, style: NumberStyle) -> tuple[str, str, str]:
    """(leading marks, the digits part, trailing marks): a currency code or a CR/DR mark keeps its letters
    (the lookalike repair turns letters into digits)."""
    head, tail = "", ""
    for mark in sorted(style.currency, key=len, reverse=True):
        for sign in ("", "-", "("):
            if text.startswith(sign + mark):
                head, text = sign + mark, text[len(sign) + len(mark):]
                break
        if text.endswith(mark):
            tail, text = mark + tail, text[:-len(mark)]
        if head:
            break
    match = re.search(r"\s*(?i:CR|DR)\)?$", text) if "cr_dr" in style.negative else None
    if match:
        tail, text = text[match.start():] + tail, text[:match.start()]
    return head, text, tail


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
               "november", "december"]
LETTER_LOOKALIKES = str.maketrans({"0": "o", "1": "l", "|": "l", "!": "l", "5": "s", "8": "b", "6": "b", "2": "z"})


def _fold_month(token: str) -> tuple[str, bool]:
    """A month name read with OCR confusions ('Ju1', 'Dcc') as written ('Jul'); (token, repaired)."""
    letters = token.translate(LETTER_LOOKALIKES).lower().strip(".,")
    for names in (MONTHS, MONTH_NAMES):
        if letters in names:
            return (letters.capitalize() if len(letters) == 3 else letters.capitalize()), letters != token.lower()
    close = difflib.get_close_matches(letters, MONTHS + MONTH_NAMES, n=1, cutoff=0.66)
    if close:
        return close[0].capitalize(), True
    return token, False


def _read_date(raw: str, text: str, rule: ColumnRule) -> CellReading:
    named = any(code in rule.date_format for code in ("%b", "%B"))
    doubt = None
    if named:  # '01 May 2026', 'May 01, 2026': the spaces are part of the format
        words = re.split(r"(\s+|,)", text)
        folded = []
        for word in words:
            digits = sum(c.isdigit() for c in word)
            if re.search(r"[A-Za-z]", word) and digits < sum(c.isalpha() for c in word):
                month, repaired = _fold_month(word)
                doubt = doubt or (f"month name repaired: {raw!r}" if repaired and month.lower() != word.lower()
                                  else None)
                folded.append(month)
            else:
                translated = word.translate(DIGIT_LOOKALIKES)
                if translated[:1] != word[:1] or translated[-1:] != word[-1:]:
                    doubt = doubt or f"a mark at the edge read as a digit: {raw!r}"
                folded.append(translated)
        value = re.sub(r"\s+", " ", "".join(folded)).strip()
    else:
        compact = text.replace(" ", "")
        value = compact.translate(DIGIT_LOOKALIKES)
        if " " in text:
            doubt = f"pieces joined into one value: {raw!r}"
        elif compact[:1] != value[:1] or compact[-1:] != value[-1:]:
            doubt = f"a mark at the edge read as a digit: {raw!r}"
    try:
        parsed = datetime.strptime(value, rule.date_format)
    except ValueError:
        return CellReading(value, f"not a date in {rule.date_format}: {raw!r}")
    if parsed.strftime(rule.date_format).lower() != value.lower():  # '2026-06-2' is not %Y-%m-%d
        return CellReading(value, f"not exactly {rule.date_format} (zero-padded, full length): {raw!r}")
    return CellReading(parsed.strftime(rule.date_format), None, doubt)


def _read_id(raw: str, text: str, pattern: str) -> CellReading:
    """Repairs of an id that keep every digit read: lookalike letters after the prefix ('co0O0001' ->
    'C0000001'), and the expected prefix letter misread as a lookalike ('7263977421' -> 'T263977421').
    A candidate that would drop or add a digit is never taken."""
    compact = text.replace(" ", "")
    joined = " " in text
    expected = re.match(r"^\^?([A-Za-z]+)", pattern)
    letters = expected.group(1) if expected else ""
    candidates: list[tuple[str, str | None]] = [(compact, None), (compact.upper(), None)]
    body_start = len(letters) if letters and compact[:len(letters)].upper() == letters.upper() else None
    if body_start is not None:
        candidates.append((letters + compact[body_start:].translate(DIGIT_LOOKALIKES), None))
    elif letters:
        for lookalike in PREFIX_LOOKALIKES.get(letters[0].upper(), ()):
            if compact.startswith(lookalike) and len(letters) == 1:
                candidates.append((letters + compact[len(lookalike):].translate(DIGIT_LOOKALIKES), None))
    else:
        match = re.match(r"^([A-Za-z]*)(.*)$", compact)
        candidates.append((match.group(1).upper() + match.group(2).translate(DIGIT_LOOKALIKES), None))
    for candidate, _ in candidates:
        if re.fullmatch(pattern, candidate):
            doubt = f"pieces joined into one id: {raw!r}" if joined else None
            if compact[-1:] and not compact[-1].isdigit() and candidate[-1:].isdigit():
                doubt = f"a mark at the edge read as a digit: {raw!r}"
            return CellReading(candidate, None, doubt)
    return CellReading(text, f"does not match {pattern}: {raw!r}")


# ---------------------------------------------------------------- rules learned from the document


def infer_rules(headers: list[str], raw_rows: list[list[str]]) -> list[ColumnRule]:
    """Without a schema, learn each column's shape from its own values (most of them read right):
    an id prefix and length, a date format, two-decimal amounts, or a small set of categories."""
    rules = []
    for index, header in enumerate(headers):
        values = [row[index].strip() for row in raw_rows if index < len(row) and row[index].strip()]
        rules.append(_infer_rule(header, values))
    return rules


def _infer_rule(header: str, values: list[str]) -> ColumnRule:
    if not values:
        return ColumnRule(header=header, name=header)
    majority = 0.8 * len(values)
    ids = Counter((m.group(1), len(m.group(2))) for v in values if (m := re.fullmatch(r"([A-Z]+)(\d+)", v)))
    if ids:
        (prefix, digits), _ = ids.most_common(1)[0]
        lookalikes = [re.escape(prefix[0])] + [re.escape(x) for x in PREFIX_LOOKALIKES.get(prefix[0], ())]
        shape = rf"(?:{'|'.join(lookalikes)}){re.escape(prefix[1:])}\d{{{digits}}}"
        if sum(bool(re.fullmatch(shape, v)) for v in values) >= majority:  # 'T' ids, some read as '7...'
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
