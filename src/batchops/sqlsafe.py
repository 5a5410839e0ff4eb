"""Identifiers from config go through one helper; values are always bound parameters."""

from __future__ import annotations

import re
from pathlib import Path

from batchops.config import IDENTIFIER_PATTERN

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_NAMED_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LINE_COMMENT = re.compile(r"--[^\n]*")


def quote_identifier(name: str) -> str:
    """Quote a table/column name after checking it against the config identifier pattern."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid identifier (expected {IDENTIFIER_PATTERN})")
    return f'"{name}"'


def quote_source_column(name: str) -> str:
    """Quote a provider's source column name (any printable text) as a DuckDB identifier."""
    if not name or any(ord(ch) < 32 for ch in name):
        raise ValueError(f"source column {name!r} is empty or has control characters")
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    """A SQL string literal, for the few places DuckDB takes no parameter (e.g. COPY ... TO)."""
    return "'" + text.replace("'", "''") + "'"


def parameters_used(statement: str, parameters: dict) -> dict:
    """The subset of named parameters a statement references ($name); DuckDB rejects extra ones."""
    without_comments = _LINE_COMMENT.sub("", statement)
    names = set(_NAMED_PARAMETER.findall(without_comments))
    return {key: value for key, value in parameters.items() if key in names}


def read_sql(sql_dir: Path, name: str) -> str:
    path = (sql_dir / name).resolve()
    if not path.is_relative_to(sql_dir.resolve()):
        raise ValueError(f"SQL file {name!r} is outside {sql_dir}")
    return path.read_text(encoding="utf-8")
