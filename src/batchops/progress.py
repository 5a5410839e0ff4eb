"""A progress bar for long commands (OCR, the generator, benchmarks) on a terminal, and silence in CI
and logs. rich ships with Airflow, so this costs no new dependency."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def wanted(stream=None) -> bool:
    """Only for a person watching: a terminal, not CI, not switched off with BATCHOPS_PROGRESS=0."""
    stream = stream or sys.stderr
    if os.environ.get("BATCHOPS_PROGRESS", "") == "0" or os.environ.get("CI"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield items, drawing a bar on stderr when wanted()."""
    if not wanted():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total if total is not None else len(items))
        for item in items:
            yield item
            bar.advance(task)
