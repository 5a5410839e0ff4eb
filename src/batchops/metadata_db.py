"""The embedded SQLite metadata database: transactions that start with a SAVEPOINT take the write lock first.

SQLite lets a connection wait for the write lock (the `timeout` of scripts/airflow_env.sh) only while it holds
no read lock. Airflow opens some write transactions with a SAVEPOINT and reads before it writes (`airflow
backfill create` checks for an existing run, then inserts one); if the scheduler writes in between, SQLite
refuses the insert at once with "database is locked", whatever the timeout. Beginning such a transaction
with BEGIN IMMEDIATE takes the write lock up front, where waiting is allowed. Other databases, and the
API server's async (aiosqlite) engine, are untouched.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


def begin_immediate_before_savepoint(connection: Connection, name: str | None) -> None:
    dbapi_connection = connection.connection.dbapi_connection
    # sqlite3's own connections only: the API server's aiosqlite engine wraps them in an adapter of its own
    if isinstance(dbapi_connection, sqlite3.Connection) and not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN IMMEDIATE")  # a SAVEPOINT inside a transaction needs nothing more


def install() -> None:
    """Apply to every engine of this process; safe to call more than once."""
    if not event.contains(Engine, "savepoint", begin_immediate_before_savepoint):
        event.listen(Engine, "savepoint", begin_immediate_before_savepoint)
