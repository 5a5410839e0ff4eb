"""Reconciling a statement: the figures it prints (subtotals, page totals, balances brought and carried forward)
against the amounts read from its rows. A statement that adds up is proven read, not only plausibly read;
one that does not fails (a digit misread, a row missed or read twice), whatever each cell's confidence said.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from batchops.numbers import parse_number
from batchops.ocr.cells import DIGIT_LOOKALIKES, ColumnRule

# A figure in a furniture line: digits with separators, perhaps a sign, a currency mark, CR/DR.
FIGURE = re.compile(r"[-(]?(?:[^\s\w-]{1,3}\s?|[A-Z]{3}\s)?\d[\d.,' \u00a0]*\d(?:\s?(?:CR|DR|cr|dr))?\)?-?"
                    r"|[-(]?\d\)?-?")
TOLERANCE = Decimal("0.005")


def amount_rule(rules: list[ColumnRule]) -> ColumnRule | None:
    """The column the statement's figures add up: the one named amount, else the only float column."""
    named = [rule for rule in rules if rule.name == "amount" and rule.type in ("float", "integer")]
    floats = [rule for rule in rules if rule.type == "float"]
    return named[0] if named else floats[0] if len(floats) == 1 else None


def printed_figure(text: str, rule: ColumnRule) -> Decimal | None:
    """The last figure in a furniture line, read by the amount column's number format; None if none reads."""
    for candidate in reversed(FIGURE.findall(text)):
        parsed = parse_number(candidate.strip().translate(DIGIT_LOOKALIKES) if not re.search(r"(?i)cr|dr", candidate)
                              else candidate.strip(), rule.number)
        if parsed.value is not None:
            return Decimal(parsed.value)
    return None


def _amount(row: dict[str, Any], rule: ColumnRule) -> Decimal | None:
    cell = row["cells"].get(rule.header) or {}
    try:
        return Decimal(cell.get("value") or "") if not cell.get("problem") else None
    except InvalidOperation:
        return None


def reconcile(rows: list[dict[str, Any]], pages: list[dict[str, Any]], rules: list[ColumnRule]) -> list[dict[str, Any]]:
    """One check per printed figure: what was printed, what the rows read add up to, and the rows counted.
    status: ok, mismatch, unreadable (the figure does not read), or unknown (a row's amount does not read)."""
    rule = amount_rule(rules)
    checks: list[dict[str, Any]] = []
    if rule is None:
        return checks
    for page in pages:
        furniture = page.get("furniture") or []
        if not furniture:
            continue
        indexes = [i for i, row in enumerate(rows) if row["page"] == page["page"]]
        if not indexes:
            continue
        first = indexes[0]
        segment_start, brought, brought_start = first, None, first
        for item in sorted(furniture, key=lambda f: f["after_row"]):
            end = item["after_row"]
            figure = printed_figure(item["text"], rule)
            check = {"page": page["page"], "kind": item["kind"], "text": item["text"], "printed": None, "read": None,
                     "rows": 0}
            checks.append(check)
            if figure is None:
                check["status"] = "unreadable"
                continue
            check["printed"] = str(figure)
            if item["kind"] == "brought_forward":
                brought, segment_start, brought_start = figure, end, end
                check.update(status="ok", read=str(figure), why="the opening figure of the page")
                continue
            start = {"subtotal": segment_start, "carried_forward": brought_start}.get(item["kind"], first)
            amounts = [_amount(rows[i], rule) for i in range(start, end)]
            check["rows"] = len(amounts)
            if any(a is None for a in amounts):
                check["status"] = "unknown"
                check["why"] = f"{sum(a is None for a in amounts)} amount(s) of these rows do not read"
                continue
            total = sum(amounts, Decimal(0)) + (brought if item["kind"] == "carried_forward" and brought is not None
                                                else Decimal(0))
            check["read"] = str(total)
            check["status"] = "ok" if abs(total - figure) <= TOLERANCE else "mismatch"
            check["row_range"] = (start, end)
            if item["kind"] == "subtotal":
                segment_start = end
    return checks


def reconciliation_failures(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures that do not add up, or do not read (a row's unreadable amount is flagged on its own)."""
    return [check for check in checks if check["status"] in ("mismatch", "unreadable")]


def flag_mismatches(rows: list[dict[str, Any]], checks: list[dict[str, Any]], rule: ColumnRule | None) -> None:
    """The amounts of rows a printed figure does not agree with: flagged, whichever of them is wrong."""
    for check in checks:
        if check["status"] == "mismatch" and rule is not None:
            for index in range(*check["row_range"]):
                cell = rows[index]["cells"].get(rule.header)
                if cell and not cell.get("problem") and not cell.get("doubt"):
                    cell["doubt"] = (f"the page's {check['kind'].replace('_', ' ')} {check['printed']} does not agree "
                                     f"with the amounts read ({check['read']})")
                    cell["confirmed"] = False


def describe_failure(check: dict[str, Any]) -> str:
    label = check["kind"].replace("_", " ")
    if check["status"] == "mismatch":
        return (f"page {check['page']}: the {label} printed {check['printed']} but the {check['rows']} rows read add up "
                f"to {check['read']} (a digit misread, or a row missed or read twice)")
    if check["status"] == "unknown":
        return f"page {check['page']}: the {label} ({check['printed']}) cannot be checked: {check['why']}"
    return f"page {check['page']}: the {label} line {check['text']!r} has no figure that reads as an amount"
