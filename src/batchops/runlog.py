"""Structured run log: one JSON object per line in runs/<dag_id>/<run_id>/logs.jsonl."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchops.errors import BatchOpsError, explain_os_error
from batchops.owner import HOST

_python_log = logging.getLogger("batchops")


DEFAULT_MAX_BYTES = 16 << 20


def rotated(path: Path) -> Path:
    """Where the older events go when a run's log reaches its cap: logs.jsonl -> logs.1.jsonl."""
    return path.with_name(f"{path.stem}.1{path.suffix}")


class RunLogger:
    """Appends events for one stage; each line is written with a single O_APPEND write.

    A run's log is capped: once it holds max_bytes, it moves to logs.1.jsonl (replacing an older one)
    and a new logs.jsonl starts, so a runaway stage cannot fill the disk or slow every reader."""

    def __init__(self, path: Path, stage: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path
        self.stage = stage
        self.max_bytes = max_bytes

    def event(self, event: str, level: str = "INFO", **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level,
                  "stage": self.stage, "event": event, "host": HOST, "pid": os.getpid(), **fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        _python_log.log(logging.getLevelName(level), "%s %s %s", self.stage, event, fields)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = self._open_with_room(len(line))
            try:
                # Under the lock: another writer's append that spans a page boundary shows a size that ends
                # mid-line until it is done, which the torn-line check below would take for a killed writer.
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                size = os.fstat(descriptor).st_size
                if size and os.pread(descriptor, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a killed writer left a torn line: do not glue this event onto it
                os.write(descriptor, line)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise explain_os_error(self.path, exc) from exc

    def _open_with_room(self, line_bytes: int) -> int:
        """The log's descriptor; when the line would pass the cap, rotate first (one process does it:
        the others see that the file they hold is no longer the one at the path, and reopen)."""
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(descriptor).st_size
            if size == 0 or size + line_bytes <= self.max_bytes:
                return descriptor
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                current = os.stat(self.path)
                held = os.fstat(descriptor)
                if (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev) and held.st_size > 0:
                    os.replace(self.path, rotated(self.path))
            except FileNotFoundError:
                pass
            finally:
                os.close(descriptor)  # also releases the flock

    def failed(self, event: str, exc: BaseException, **fields: Any) -> None:
        """Log `<event>_failed` with the error; a failure to log (e.g. a full disk) never hides the error."""
        with suppress(BatchOpsError):
            self.event(f"{event}_failed", level="ERROR", error=f"{type(exc).__name__}: {exc}", **fields)

    @contextmanager
    def timed(self, event: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Log `<event>_started`, then `<event>_finished` with seconds (or `<event>_failed` with the error)."""
        started = time.perf_counter()
        result: dict[str, Any] = {}
        self.event(f"{event}_started", **fields)
        try:
            yield result
        except BaseException as exc:
            self.failed(event, exc, seconds=round(time.perf_counter() - started, 3), **fields)
            raise
        self.event(f"{event}_finished", seconds=round(time.perf_counter() - started, 3), **{**fields, **result})


def read_events(path: Path) -> list[dict[str, Any]]:
    """Read logs.jsonl (after its rotated part, if any), skipping torn lines left by a killed process."""
    events = []
    for part in (rotated(path), path):
        if part.exists():
            events += parse_events(part.read_text(encoding="utf-8", errors="replace").splitlines())
    return events


def parse_events(lines: list[str]) -> list[dict[str, Any]]:
    """logs.jsonl lines as events, skipping torn or foreign lines (a killed writer's half line)."""
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
