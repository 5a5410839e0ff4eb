"""Run a SQL file statement by statement on one connection, binding the named parameters each uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchops.sqlsafe import parameters_used, read_sql


def split_statements(sql: str) -> list[str]:
    """Split on ';' at line ends; our SQL files keep one statement per ';'-terminated block."""
    import sqlparse  # ships with common-sql; handles ';' inside strings and comments

    return [s.strip().rstrip(";") for s in sqlparse.split(sql) if sqlparse.format(s, strip_comments=True).strip()]


def run_sql_file(connection, sql_dir: Path, name: str, parameters: dict[str, Any],
                 identifiers: dict[str, str] | None = None) -> None:
    """Execute every statement of include/sql/<name>; identifiers are pre-quoted and substituted."""
    text = read_sql(sql_dir, name)
    if identifiers:
        text = text.format(**identifiers)
    for statement in split_statements(text):
        connection.execute(statement, parameters_used(statement, parameters))
