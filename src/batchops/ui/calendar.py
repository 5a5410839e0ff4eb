"""The provider x snapshot calendar of the BatchOps page: one row per provider, one cell per snapshot date of a
window, each pipeline's run of that date a coloured mark linking to its run tab. Built from the run index
(batchops.runindex: two small files per DAG), filtered and paged before anything else is read, so a
thousand providers cost what the fifty on the page cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

OUTCOME_FILTERS = ("COMPLETE", "BLOCKED", "NO DROP", "FAILED", "RUNNING", "NOT RUN")
MARK_CLASSES = {"COMPLETE": "complete", "BLOCKED": "blocked", "NO DROP": "nodrop", "FAILED": "failed",
                "RUNNING": "running"}
MAX_DAYS = 92
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class CalendarQuery:
    """What the page was asked for (URL parameters), checked: a bad value gets a message, not a 500."""

    end: date
    days: int = 30
    provider: str = ""  # substring of the provider id
    outcome: str = ""  # one of OUTCOME_FILTERS: providers with such a day in the window
    queue: str = ""
    page: int = 1
    per_page: int = 50

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def params(self, **changes: Any) -> dict[str, str]:
        query = replace(self, **changes)
        values = {"end": query.end.isoformat(), "days": str(query.days), "provider": query.provider,
                  "outcome": query.outcome, "queue": query.queue, "page": str(query.page),
                  "per_page": str(query.per_page)}
        return {key: value for key, value in values.items() if value}


def parse_query(params: dict[str, str], today: date | None = None) -> tuple[CalendarQuery, list[str]]:
    """A CalendarQuery from URL parameters, and a note per value that was not understood (the default is used)."""
    notes: list[str] = []
    today = today or datetime.now(UTC).date()

    def whole(name: str, default: int, low: int, high: int) -> int:
        text = (params.get(name) or "").strip()
        if not text:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            notes.append(f"{name}={text!r} is not a whole number from {low} to {high}; showing {default}")
            return default
        return int(text)

    end = today
    if (params.get("end") or "").strip():
        try:
            end = date.fromisoformat(params["end"].strip())
        except ValueError:
            notes.append(f"end={params['end']!r} is not a date (YYYY-MM-DD); showing up to {today}")
    outcome = (params.get("outcome") or "").strip().upper()
    if outcome and outcome not in OUTCOME_FILTERS:
        notes.append(f"outcome={params['outcome']!r} is not one of {', '.join(OUTCOME_FILTERS)}; not filtered")
        outcome = ""
    return CalendarQuery(end=end, days=whole("days", 30, 1, MAX_DAYS), provider=(params.get("provider") or "").strip(),
                         outcome=outcome, queue=(params.get("queue") or "").strip(),
                         page=whole("page", 1, 1, 1_000_000), per_page=whole("per_page", 50, 1, MAX_PER_PAGE)), notes


@dataclass
class ProviderRow:
    provider_id: str
    queue: str
    pipelines: list[str]
    # per date: [(pipeline, entry)] of the runs indexed for that date
    days: dict[date, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def outcomes(self, dates: list[date]) -> set[str]:
        found = {entry.get("outcome", "") for marks in self.days.values() for _, entry in marks}
        if len(self.days) < len(dates):
            found.add("NOT RUN")
        return found


def select_providers(providers: list[tuple[str, str, list[str]]], query: CalendarQuery) -> list[ProviderRow]:
    """(provider_id, queue, pipelines) rows matching the provider substring and the queue, by provider id."""
    needle = query.provider.lower()
    return [ProviderRow(pid, queue, pipelines) for pid, queue, pipelines in sorted(providers)
            if (not needle or needle in pid.lower()) and (not query.queue or queue == query.queue)]


def fill(rows: list[ProviderRow], query: CalendarQuery, read_window) -> None:
    """Each row's runs of the window: read_window(dag_id, start, end) -> {date: entry}."""
    start, end = query.start, query.end
    for row in rows:
        for pipeline in row.pipelines:
            for day, entry in read_window(f"{row.provider_id}__{pipeline}", start, end).items():
                row.days.setdefault(day, []).append((pipeline, entry))


def current_state(entry: dict[str, Any], airflow_state: str | None) -> tuple[str, str]:
    """(outcome, note): the index's outcome, unless Airflow knows better. A run cleared and running again shows
    running (its summary is the previous try's); a run Airflow ended as failed before summarize wrote anything
    shows failed."""
    outcome = str(entry.get("outcome", ""))
    if airflow_state in ("running", "queued") and outcome != "RUNNING":
        return "RUNNING", f"running again in Airflow (was {outcome}: the summary is the previous try's)"
    if airflow_state == "failed" and outcome == "RUNNING":
        return "FAILED", "Airflow ended the run as failed before it wrote a summary"
    return outcome, ""


def page_of(rows: list[ProviderRow], query: CalendarQuery) -> tuple[list[ProviderRow], int]:
    pages = max(1, math.ceil(len(rows) / query.per_page))
    page = min(query.page, pages)
    return rows[(page - 1) * query.per_page: page * query.per_page], pages


def cells(row: ProviderRow, query: CalendarQuery, airflow_states: dict[tuple[str, str], str],
          run_url) -> list[dict[str, Any]]:
    """One cell per date: the marks of the pipelines that ran it, each with its class, link and tooltip."""
    shown = []
    for day in query.dates:
        marks = []
        for pipeline, entry in sorted(row.days.get(day, [])):
            dag_id = f"{row.provider_id}__{pipeline}"
            outcome, note = current_state(entry, airflow_states.get((dag_id, str(entry.get("run_id")))))
            reason = note or str(entry.get("reason") or "")
            marks.append({"class": MARK_CLASSES.get(outcome, "unknown"), "url": run_url(dag_id, str(entry.get("run_id"))),
                          "title": f"{row.provider_id} · {pipeline} · {day}: {outcome or '?'}"
                                   + (f": {reason[:200]}" if reason else "") + f" (run {entry.get('run_id')})"})
        shown.append({"date": day, "marks": marks})
    return shown
