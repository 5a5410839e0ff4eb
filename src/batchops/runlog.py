"""Structured run log: one JSON object per line in runs/<dag_id>/<run_id>/logs.jsonl."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchops.errors import BatchOpsError

_python_log = logging.getLogger("batchops")
# The short host name, as in temp-file names (recovery.owner_tag): tells a killed attempt from a running one.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


class RunLogger:
    """Appends events for one stage; each line is written with a single O_APPEND write."""

    def __init__(self, path: Path, stage: str):
        self.path = path
        self.stage = stage

    def event(self, event: str, level: str = "INFO", **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level,
                  "stage": self.stage, "event": event, "host": HOST, "pid": os.getpid(), **fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        _python_log.log(logging.getLevelName(level), "%s %s %s", self.stage, event, fields)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                size = os.fstat(descriptor).st_size
                if size and os.pread(descriptor, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a killed writer left a torn line: do not glue this event onto it
                os.write(descriptor, line)
            finally:
                os.close(descriptor)
        except OSError as exc:
            from batchops.artifacts import explain_os_error

            raise explain_os_error(self.path, exc) from exc

    @contextmanager
    def timed(self, event: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Log `<event>_started`, then `<event>_finished` with seconds (or `<event>_failed` with the error)."""
        started = time.perf_counter()
        result: dict[str, Any] = {}
        self.event(f"{event}_started", **fields)
        try:
            yield result
        except BaseException as exc:
            with suppress(BatchOpsError):  # e.g. a full disk: the original error is the one to report
                self.event(f"{event}_failed", level="ERROR", seconds=round(time.perf_counter() - started, 3),
                           error=f"{type(exc).__name__}: {exc}", **fields)
            raise
        self.event(f"{event}_finished", seconds=round(time.perf_counter() - started, 3), **{**fields, **result})


def read_events(path: Path) -> list[dict[str, Any]]:
    """Read logs.jsonl, skipping a torn last line left by a killed process."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
