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


class Steps:
    """A bar advanced by hand (`with Steps("OCR pages", total) as bar: ... bar.advance(n)`); silent when
    not wanted(). `describe` changes the text beside the bar."""

    def __init__(self, description: str, total: int):
        self.description, self.total = description, total
        self._bar = None
        self._task = None

    def __enter__(self) -> Steps:
        if wanted():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
