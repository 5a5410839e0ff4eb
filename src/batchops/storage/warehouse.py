"""The provider's DuckDB warehouse: one file per provider, one writer at a time.

DuckDB lets one process hold a database file; a second process fails with 'Could not set lock on
file'. Every access therefore goes through an exclusive flock on a sidecar lock file, which queues
runs of the same provider (different providers use different files and run in parallel). The lock
is released when the connection closes, also when the process dies (the kernel drops flocks).

A restore or rebuild replaces the file through `swap_in`, journaled so that a kill at any step leaves
the old file or the new one under the warehouse's name (each with its own WAL), never neither: whoever
takes the lock next completes an interrupted swap (`complete_interrupted_swap`) before opening the file.
"""

from __future__ import annotations

import fcntl
import json
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


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def swap_journal(path: Path) -> Path:
    return path.with_name(path.name + ".swap.json")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def swap_in(path: Path, incoming: Path, kept: Path, fault_point=lambda point: None) -> Path | None:
    """Make `incoming` (a complete, fsynced DuckDB file in the warehouse's folder) the warehouse at `path`;
    the file it replaces stays as `kept`, with its WAL as `kept`.wal. Caller holds the provider lock.
    Returns `kept`, or None when there was no warehouse."""
    had_file = path.exists()
    journal = swap_journal(path)
    temp = journal.with_name(f".{journal.name}.{os.getpid()}.part")
    temp.write_text(json.dumps({"incoming": incoming.name, "kept": kept.name}), encoding="utf-8")
    os.replace(temp, journal)
    _fsync_folder(path.parent)
    fault_point("swap.journal_written")
    complete_interrupted_swap(path, fault_point)
    return kept if had_file else None


def complete_interrupted_swap(path: Path, fault_point=lambda point: None) -> str | None:
    """Finish a swap whose journal is still there (the process doing it was killed); each step checks what
    is done already, so it can itself be cut and finished again. Caller holds the provider lock. Returns
    what was done, or None when there was nothing to finish."""
    journal = swap_journal(path)
    try:
        names = json.loads(journal.read_text(encoding="utf-8"))
        incoming, kept = path.with_name(names["incoming"]), path.with_name(names["kept"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise WarehouseError(f"{journal} (an interrupted restore or rebuild) is not readable ({exc}); the "
                             f"warehouse {path} was left as it was. Move the journal away after checking that "
                             f"{path} is the file you want, then retry") from exc
    wal = wal_path(path)
    if wal.exists() and incoming.exists():  # the old file's WAL goes with it, never onto the new file
        os.replace(wal, wal_path(kept))
        fault_point("swap.wal_kept")
    if path.exists() and not kept.exists():
        try:
            os.link(path, kept)  # the old file under a second name: the warehouse's name is never empty
        except OSError:
            import shutil

            shutil.copy2(path, kept)
        fault_point("swap.old_kept")
    if incoming.exists():
        os.replace(incoming, path)  # one rename: the name holds the old file, then the new one
        fault_point("swap.renamed")
    _fsync_folder(path.parent)
    journal.unlink()
    return f"completed the interrupted replacement of {path} (the previous file is kept as {kept.name})"


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
            complete_interrupted_swap(path)
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
    path = warehouse_path(settings, provider_id)
    lock = _FileLock(path.with_suffix(".duckdb.lock"), settings.warehouse_lock_timeout_seconds)
    lock.acquire()
    try:
        complete_interrupted_swap(path)
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
