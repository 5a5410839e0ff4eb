"""Numbers as providers print them: thousands and decimal separators, currency marks, and the ways a negative
amount is written, declared per column (`number:` in the provider config) and read the same way from a CSV
(in DuckDB SQL, `number_sql`) and from a scanned statement (in Python, `parse_number`).

Nothing is guessed: a value the declaration does not explain is invalid, and without a declaration a value
that reads two ways ('48,528': 48528 or 48.528) is refused with the setting that decides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from batchops.sqlsafe import string_literal

NEGATIVE_STYLES = ("minus", "parentheses", "trailing_minus", "cr_dr")
BLANKS = " \u00a0\u202f"  # a space as thousands separator may be a no-break one


@dataclass(frozen=True)
class NumberStyle:
    """The effective format of a numeric column (batchops.config.NumberFormat, or the default)."""

    thousands: str = ""
    decimal: str = "."
    currency: tuple[str, ...] = ()
    negative: tuple[str, ...] = ("minus",)
    declared: bool = False

    @classmethod
    def of(cls, column: Any) -> NumberStyle:
        number = getattr(column, "number", None)
        if number is None:
            return cls()
        return cls(number.thousands, number.decimal, tuple(number.currency), tuple(number.negative), True)

    def describe(self) -> str:
        return (f"thousands {self.thousands!r}, decimal {self.decimal!r}"
                + (f", currency {list(self.currency)}" if self.currency else "")
                + f", negative {list(self.negative)}")


@dataclass(frozen=True)
class ParsedNumber:
    value: str | None  # canonical text ('-1234.56'), None when the text does not read as a number
    problem: str | None = None


def _grouped(body: str, style: NumberStyle) -> bool:
    """Digits, thousands separators only between groups of three, at most one decimal part."""
    thousands = re.escape(style.thousands) if style.thousands != " " else f"[{BLANKS}]"
    decimal = re.escape(style.decimal)
    plain = rf"\d+(?:{decimal}\d+)?"
    if not style.thousands:
        return re.fullmatch(plain, body) is not None
    return re.fullmatch(rf"(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)(?:{decimal}\d+)?", body) is not None


def _undeclared_hint(body: str) -> str | None:
    """Why a value with separators is not read without a declaration, and the setting that would decide it."""
    separators = [c for c in body if not c.isdigit()]
    if not separators:
        return None
    kinds = sorted(set(separators))
    if kinds == [","] and re.fullmatch(r"\d{1,3},\d{3}", body):
        return (f"reads two ways: {body.replace(',', '')} with thousands ',' or {body.replace(',', '.')} with decimal "
                "','; declare number: {thousands: ','} or number: {decimal: ','} on the column")
    if kinds == [","] and re.fullmatch(r"\d{1,3}(,\d{3})+", body):
        return "has thousands ','; declare number: {thousands: ','} on the column"
    if kinds == [","]:
        return "has a decimal comma; declare number: {decimal: ','} on the column"
    if kinds == [",", "."]:
        last = max(body.rfind(","), body.rfind("."))
        if body[last] == ".":
            return "has thousands ',' and decimal '.'; declare number: {thousands: ','} on the column"
        return "has thousands '.' and decimal ','; declare number: {thousands: '.', decimal: ','} on the column"
    if kinds == ["'"]:
        return "has thousands \"'\"; declare number: {thousands: \"'\"} on the column"
    if kinds == ["."] and re.fullmatch(r"\d{1,3}(\.\d{3}){2,}", body):
        return "has thousands '.'; declare number: {thousands: '.', decimal: ','} on the column"
    if set(kinds) & set(BLANKS) and set(kinds) <= set(BLANKS + "."):
        return "has blanks between digits (thousands ' '?); declare number: {thousands: ' '} on the column"
    return None


def parse_number(text: str, style: NumberStyle, integer: bool = False) -> ParsedNumber:
    """Read `text` by the column's style: currency marks stripped, the sign from an allowed negative style,
    separators checked (groups of three) and removed. Returns the canonical text, or why it is not a number."""
    s = text.strip()
    if not any(c.isdigit() for c in s):
        return ParsedNumber(None, "no digits")
    for mark in sorted(style.currency, key=len, reverse=True):
        if s.startswith(mark):
            s = s[len(mark):].strip()
        elif s.endswith(mark):
            s = s[:-len(mark)].strip()
        for sign in ("-", "("):  # '-$12.50', '($12.50)'
            if s.startswith(sign + mark):
                s = sign + s[len(sign) + len(mark):].strip()
    negative, forms = False, []
    if s.startswith("(") and s.endswith(")"):
        forms.append(("parentheses", "in parentheses"))
        s, negative = s[1:-1].strip(), True
    upper = s.upper()
    if upper.endswith(("CR", "DR")) and (len(s) == 2 or not s[-3].isalpha()):
        forms.append(("cr_dr", f"marked {upper[-2:]}"))
        negative = negative or upper.endswith("DR")
        s = s[:-2].strip()
    if s.endswith("-"):
        forms.append(("trailing_minus", "with a minus after it"))
        s, negative = s[:-1].strip(), True
    if s.startswith("-"):
        forms.append(("minus", "with a minus before it"))
        s, negative = s[1:].strip(), True
    refused = [why for style_name, why in forms if style_name not in style.negative]
    if refused:
        return ParsedNumber(None, f"written {refused[0]}, which the column's number format does not allow (negative: "
                                  f"{list(style.negative)}); declare it, e.g. negative: [minus, "
                                  f"{next(n for n, w in forms if w == refused[0])}]")
    leftover = re.sub(r"[\d.,'" + BLANKS + "]", "", s)
    if leftover:
        kind = ("a currency mark" if re.fullmatch(r"[^\w\s]+|[A-Z]{3}", leftover) else "characters")
        return ParsedNumber(None, f"has {kind} {leftover!r} the column's number format does not strip"
                                  + ("; declare it under currency" if kind == "a currency mark" else ""))
    if not s:
        return ParsedNumber(None, "no digits")
    if not _grouped(s, style):
        hint = None if style.declared else _undeclared_hint(s)
        return ParsedNumber(None, hint or f"is not a number in the column's format ({style.describe()})")
    body = s.replace(style.thousands, "") if style.thousands else s
    if style.thousands == " ":
        body = re.sub(f"[{BLANKS}]", "", s)
    body = body.replace(style.decimal, ".")
    if integer and "." in body:
        return ParsedNumber(None, "has a decimal part; the column holds whole numbers")
    return ParsedNumber(("-" if negative and body.strip("0.") else "") + body)


# ---------------------------------------------------------------- the same in SQL, for CSV files


def number_sql(raw: str, style: NumberStyle, sql_type: str) -> tuple[str, str]:
    """(value, invalid) SQL expressions over the text expression `raw` (a VARCHAR column of read_csv):
    the number read by `style` (NULL when it does not read), and whether a non-empty value did not read.
    Mirrors parse_number (tests/test_numbers.py checks the two agree)."""
    s = f"trim({raw}, {string_literal(BLANKS)})"
    for mark in sorted(style.currency, key=len, reverse=True):
        m = string_literal(mark)
        s = (f"(CASE WHEN starts_with({s}, {m}) THEN trim(substr({s}, length({m}) + 1)) "
             f"WHEN ends_with({s}, {m}) THEN trim(left({s}, length({s}) - length({m}))) "
             f"WHEN starts_with({s}, '-' || {m}) THEN '-' || trim(substr({s}, length({m}) + 2)) "
             f"WHEN starts_with({s}, '(' || {m}) THEN '(' || trim(substr({s}, length({m}) + 2)) ELSE {s} END)")
    # one pass per form, in parse_number's order; each yields (text, negative, form used)
    steps = [("parentheses", r"^\((.*)\)$"), ("cr_dr", r"^(.*?)\s*(?i:CR|DR)$"), ("trailing_minus", r"^(.*?)\s*-$"),
             ("minus", r"^-\s*(.*)$")]
    negative_parts, forms_parts = [], []
    text = s
    for name, pattern in steps:
        matches = f"regexp_matches({text}, {string_literal(pattern)})"
        if name == "cr_dr":
            negative_parts.append(f"({matches} AND upper({text}) LIKE '%DR')")
        else:
            negative_parts.append(matches)
        if name not in style.negative:
            forms_parts.append(matches)
        text = f"(CASE WHEN {matches} THEN trim(regexp_extract({text}, {string_literal(pattern)}, 1)) ELSE {text} END)"
    thousands = f"[{BLANKS}]" if style.thousands == " " else re.escape(style.thousands)
    decimal = re.escape(style.decimal)
    grouped = (rf"^(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)(?:{decimal}\d+)?$" if style.thousands
               else rf"^\d+(?:{decimal}\d+)?$")
    body = text
    if style.thousands:
        body = (f"regexp_replace({body}, {string_literal(f'[{BLANKS}]')}, '', 'g')" if style.thousands == " "
                else f"replace({body}, {string_literal(style.thousands)}, '')")
    body = f"replace({body}, {string_literal(style.decimal)}, '.')"
    ok = f"(regexp_matches({text}, {string_literal(grouped)}) AND NOT ({' OR '.join(forms_parts) or 'false'}))"
    signed = f"(CASE WHEN {' OR '.join(negative_parts)} THEN -1 ELSE 1 END)"
    value = f"(CASE WHEN {ok} THEN {signed} * TRY_CAST({body} AS {sql_type}) END)"
    invalid = f"(nullif({s}, '') IS NOT NULL AND NOT coalesce({ok} AND TRY_CAST({body} AS {sql_type}) IS NOT NULL, false))"
    return value, invalid
