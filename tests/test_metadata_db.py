"""batchops.metadata_db: on SQLite, a transaction that starts with a SAVEPOINT, reads, then writes while another
connection writes waits for its turn instead of failing at once (what `airflow backfill create` does while the
local stack's scheduler writes)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from batchops import metadata_db

HOLD_SECONDS = 1.5


def read_then_write_while_another_writes(path) -> float:
    """The other connection holds the write lock for HOLD_SECONDS; returns how long our insert took."""
    holding, release = threading.Event(), threading.Event()

    def other_writer():
        other = sqlite3.connect(path, timeout=30, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO dag_run VALUES ('scheduled')")
        holding.set()
        release.wait(HOLD_SECONDS)
        other.execute("COMMIT")
        other.close()

    engine = create_engine(f"sqlite:///{path}?timeout=30")
    thread = threading.Thread(target=other_writer)
    thread.start()
    holding.wait(10)
    started = time.monotonic()
    try:
        with Session(engine) as session:
            with session.begin_nested():
                session.execute(text("SELECT count(*) FROM dag_run")).all()
                session.execute(text("INSERT INTO dag_run VALUES ('backfill')"))
            session.commit()
        return time.monotonic() - started
    finally:
        release.set()
        thread.join()
        engine.dispose()


@pytest.fixture
def metadata(tmp_path):
    path = tmp_path / "airflow.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE dag_run (run_id TEXT)")
    return path


@pytest.fixture
def installed():
    metadata_db.install()
    metadata_db.install()  # imported twice (as local settings and as a plugin module): one listener
    yield
    event.remove(Engine, "savepoint", metadata_db.begin_immediate_before_savepoint)


def test_a_savepoint_transaction_waits_for_the_other_writer(metadata, installed):
    waited = read_then_write_while_another_writes(metadata)
    assert waited >= HOLD_SECONDS * 0.8
    with sqlite3.connect(metadata) as connection:
        assert sorted(row[0] for row in connection.execute("SELECT run_id FROM dag_run")) == ["backfill", "scheduled"]


def test_without_it_sqlite_refuses_at_once_whatever_the_timeout(metadata):
    assert not event.contains(Engine, "savepoint", metadata_db.begin_immediate_before_savepoint)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"):
        read_then_write_while_another_writes(metadata)
    assert time.monotonic() - started < HOLD_SECONDS


def test_the_async_engine_of_the_api_server_is_left_alone(metadata, installed):
    """aiosqlite wraps sqlite3 in an adapter of its own: a savepoint on it must work as before, not raise."""
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    async def savepoint_read_then_write():
        engine = create_async_engine(f"sqlite+aiosqlite:///{metadata}")
        async with AsyncSession(engine) as session:
            async with session.begin_nested():
                await session.execute(text("SELECT count(*) FROM dag_run"))
                await session.execute(text("INSERT INTO dag_run VALUES ('api')"))
            await session.commit()
        await engine.dispose()

    asyncio.run(savepoint_read_then_write())
    with sqlite3.connect(metadata) as connection:
        assert [row[0] for row in connection.execute("SELECT run_id FROM dag_run")] == ["api"]
