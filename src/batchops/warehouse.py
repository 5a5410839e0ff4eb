"""The provider's DuckDB warehouse: one file per provider, one writer at a time.

DuckDB lets one process hold a database file; a second process fails with 'Could not set lock on
file'. Every access therefore goes through an exclusive flock on a sidecar lock file, which queues
runs of the same provider (different providers use different files and run in parallel). The lock
is released when the connection closes, also when the process dies (the kernel drops flocks).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchops.errors import WarehouseError
from batchops.settings import Settings


def warehouse_path(settings: Settings, provider_id: str) -> Path:
    return settings.warehouse_dir / f"{provider_id}.duckdb"


def duckdb_config(settings: Settings) -> dict[str, str]:
    config: dict[str, str] = {}
    if settings.duckdb_memory_limit:
        config["memory_limit"] = settings.duckdb_memory_limit
    if settings.duckdb_threads:
        config["threads"] = str(settings.duckdb_threads)
    return config


class _FileLock:
    def __init__(self, path: Path, timeout_seconds: float):
        self.path, self.timeout_seconds = path, timeout_seconds
        self._descriptor: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._descriptor = descriptor
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    raise WarehouseError(
                        f"waited {self.timeout_seconds:.0f}s for the warehouse lock {self.path}; another run of "
                        "this provider is still writing. Retry later or raise BATCHOPS_WAREHOUSE_LOCK_TIMEOUT."
                    ) from None
                time.sleep(0.2)

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


class LockedConnection:
    """A DuckDB connection that holds the provider's warehouse lock until it is closed."""

    def __init__(self, settings: Settings, provider_id: str):
        import duckdb  # heavy import kept out of DAG parsing

        path = warehouse_path(settings, provider_id)
        self._lock = _FileLock(path.with_suffix(".duckdb.lock"), settings.warehouse_lock_timeout_seconds)
        self._lock.acquire()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp_dir = settings.warehouse_dir / "tmp" / provider_id
            temp_dir.mkdir(parents=True, exist_ok=True)
            self.duckdb = duckdb.connect(str(path), config=duckdb_config(settings))
            # Spill to disk instead of failing when memory_limit is reached.
            self.duckdb.execute("SET temp_directory = ?", [str(temp_dir)])
        except BaseException as exc:
            self._lock.release()
            if isinstance(exc, Exception) and not isinstance(exc, WarehouseError):
                raise WarehouseError(f"cannot open warehouse {path}: {exc}") from exc
            raise
        self.path = path

    # DB-API surface used by common-sql's DbApiHook
    def cursor(self):
        return self.duckdb.cursor()

    def commit(self) -> None:
        self.duckdb.commit()

    def execute(self, *args, **kwargs):
        return self.duckdb.execute(*args, **kwargs)

    def close(self) -> None:
        try:
            self.duckdb.close()
        finally:
            self._lock.release()

    def __enter__(self) -> LockedConnection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def open_warehouse(settings: Settings, provider_id: str) -> Iterator[LockedConnection]:
    connection = LockedConnection(settings, provider_id)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def transaction(connection: LockedConnection) -> Iterator[LockedConnection]:
    """All-or-nothing: DuckDB auto-commits statement by statement unless told otherwise."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
