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

from batchops.errors import (
    BatchOpsError,
    WarehouseBusyError,
    WarehouseDamagedError,
    WarehouseError,
    is_duckdb_error,
)
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


# Signs in DuckDB's error text that the file itself is broken (truncated, overwritten, not DuckDB).
_DAMAGE_SIGNS = ("not a valid DuckDB database file", "Could not read enough bytes", "Corrupt", "corrupt",
                 "checksum", "Failed to read database header", "INTERNAL Error")


def explain_warehouse_failure(exc: BaseException, path: Path, provider_id: str) -> BatchOpsError | None:
    """A user-facing error for a DuckDB failure that is about the warehouse file or its disk, else None
    (SQL and data errors are for the caller to explain)."""
    if not is_duckdb_error(exc):
        return None
    text = str(exc)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "No space left on device" in text:
        return WarehouseError(
            f"the disk holding the warehouse {path} is full ({first_line}); free space in {path.parent}, then "
            "clear the task to re-run it. The transaction was not committed; stored data is unchanged.")
    if any(sign in text for sign in _DAMAGE_SIGNS):
        return WarehouseDamagedError(
            f"warehouse file {path} is damaged ({first_line}). It is derived data: restore the last backup "
            f"(python -m batchops restore --provider {provider_id}) or rebuild it from the landing drops "
            f"(python -m batchops rebuild --provider {provider_id}), then clear the task.")
    return None


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
                    raise WarehouseBusyError(
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
        self.path, self.provider_id = path, provider_id
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp_dir = settings.warehouse_dir / "tmp" / provider_id
            temp_dir.mkdir(parents=True, exist_ok=True)
            self.duckdb = duckdb.connect(str(path), config=duckdb_config(settings))
            # Spill to disk instead of failing when memory_limit is reached.
            self.duckdb.execute("SET temp_directory = ?", [str(temp_dir)])
        except BaseException as exc:
            self._lock.release()
            explained = explain_warehouse_failure(exc, path, provider_id)
            if explained is not None:
                raise explained from exc
            if isinstance(exc, Exception) and not isinstance(exc, WarehouseError):
                raise WarehouseError(f"cannot open warehouse {path}: {exc}") from exc
            raise

    # DB-API surface used by common-sql's DbApiHook
    def cursor(self):
        return self.duckdb.cursor()

    def commit(self) -> None:
        with self.explained():
            self.duckdb.commit()

    def execute(self, *args, **kwargs):
        with self.explained():
            return self.duckdb.execute(*args, **kwargs)

    def register(self, name: str, frame) -> None:
        """Make a pandas frame queryable as `name` on this connection (DuckDB reads it in place)."""
        self.duckdb.register(name, frame)

    @contextmanager
    def explained(self) -> Iterator[None]:
        """Turn a full disk or a damaged file into a message that names the cause and the fix."""
        try:
            yield
        except Exception as exc:
            explained = explain_warehouse_failure(exc, self.path, self.provider_id)
            if explained is None:
                raise
            raise explained from exc

    def close(self) -> None:
        try:
            with self.explained():  # closing checkpoints the WAL into the file: it can meet a full disk
                self.duckdb.close()
        finally:
            self._lock.release()

    def __enter__(self) -> LockedConnection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def warehouse_lock(settings: Settings, provider_id: str) -> Iterator[None]:
    """Hold the provider's warehouse lock without opening the file (restore and rebuild replace it)."""
    lock = _FileLock(warehouse_path(settings, provider_id).with_suffix(".duckdb.lock"),
                     settings.warehouse_lock_timeout_seconds)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


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
