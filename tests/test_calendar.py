"""The provider-day calendar: the run index (batchops.runindex) written by plan and summarize, and the page's
query, filters and paging (batchops.ui.calendar, batchops.ui.routes.calendar_page) over many providers."""

from __future__ import annotations

import json
import time
from datetime import date

from batchops import runindex
from batchops.ui import calendar
from batchops.ui.routes import calendar_page
from many_providers import make_providers, make_run_folder

DAY = date(2026, 3, 2)


def test_the_latest_run_of_a_date_is_its_state(tmp_path):
    runs = tmp_path / "runs"
    runindex.record_run(runs, "p__m", "manual__1", DAY, "RUNNING")
    runindex.record_run(runs, "p__m", "manual__1", DAY, "FAILED", "score: boom")
    runindex.record_run(runs, "p__m", "manual__2", DAY, "RUNNING")  # a rerun of the date
    runindex.record_run(runs, "p__m", "manual__1", DAY, "FAILED", "late summary of the first run")
    entry = runindex.read_window(runs, "p__m", DAY, DAY)[DAY]
    assert (entry["run_id"], entry["outcome"]) == ("manual__2", "RUNNING")
    runindex.record_run(runs, "p__m", "manual__2", DAY, "COMPLETE")
    assert runindex.read_window(runs, "p__m", DAY, DAY)[DAY]["outcome"] == "COMPLETE"
    assert (runs / "p__m" / ".calendar" / "2026-03.json").is_file()


def test_runs_made_before_the_index_are_indexed_from_their_folders(tmp_path):
    make_run_folder(tmp_path, "p__m", "manual__old", date(2026, 1, 5), "BLOCKED")
    make_run_folder(tmp_path, "p__m", "manual__older", date(2025, 12, 30), "COMPLETE")
    assert runindex.ensure_index(tmp_path / "runs", "p__m")
    assert not runindex.ensure_index(tmp_path / "runs", "p__m")  # once
    entries = runindex.all_entries(tmp_path / "runs", "p__m")
    assert {day: e["outcome"] for day, e in entries.items()} == {date(2026, 1, 5): "BLOCKED",
                                                                  date(2025, 12, 30): "COMPLETE"}


def test_airflow_state_wins_over_an_old_summary():
    assert calendar.current_state({"outcome": "FAILED"}, "running")[0] == "RUNNING"
    assert calendar.current_state({"outcome": "RUNNING"}, "failed")[0] == "FAILED"
    assert calendar.current_state({"outcome": "COMPLETE"}, "success") == ("COMPLETE", "")


def test_a_bad_parameter_is_named_and_the_default_used(bad_input):
    query, notes = calendar.parse_query({"days": "0", "end": "2026-02-30", "outcome": "sort of", "page": "-1"},
                                        today=DAY)
    assert (query.days, query.end, query.outcome, query.page) == (30, DAY, "", 1)
    assert len(notes) == 4 and any("end='2026-02-30' is not a date" in note for note in notes)
    bad_input.record("output", "BatchOps page with days=0, end=2026-02-30, outcome='sort of', page=-1",
                     "; ".join(notes), kept="the page shows the defaults")


def test_a_thousand_providers_page_quickly_and_filter(tmp_path):
    """1,000 providers x 2 DAGs x 30 days: the page reads only its 50 providers' index files; an outcome filter
    reads them all, once (then only stats them)."""
    from batchops.settings import Settings

    ids = make_providers(tmp_path, 1000, DAY)
    settings = Settings.from_env(default_home=tmp_path, env={})
    calendar_page(settings, {}, today=DAY)  # the config cache warms (the api-server does it at start)
    timings = {}
    for name, params in (("first page", {}), ("page 20", {"page": "20"}), ("provider filter", {"provider": "shop_09"}),
                         ("queue filter", {"queue": "q2"}), ("outcome filter", {"outcome": "FAILED"}),
                         ("outcome filter again", {"outcome": "FAILED"})):
        started = time.perf_counter()
        page = calendar_page(settings, params, today=DAY)
        timings[name] = time.perf_counter() - started
        if name == "first page":
            assert page["total"] == 1000 and page["pages"] == 20 and len(page["rows"]) == 50
            assert [row["provider_id"] for row in page["rows"]] == ids[:50]
            assert len(page["rows"][0]["cells"]) == 30
        if name == "provider filter":
            assert page["total"] == 100 and all("shop_09" in row["provider_id"] for row in page["rows"])
        if name == "queue filter":
            assert page["total"] == 334 and {row["queue"] for row in page["rows"]} == {"q2"}
        if name.startswith("outcome"):
            marks = [mark for row in page["rows"] for cell in row["cells"] for mark in cell["marks"]]
            assert all(any(m["class"] == "failed" for c in row["cells"] for m in c["marks"]) for row in page["rows"])
            assert 0 < page["total"] < 1000 and marks
    print(json.dumps({name: round(seconds, 3) for name, seconds in timings.items()}))
    assert timings["first page"] < 1.0 and timings["page 20"] < 1.0 and timings["outcome filter again"] < 1.0, timings
