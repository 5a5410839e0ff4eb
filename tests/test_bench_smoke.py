"""The benchmark harness runs end to end at a tiny size (a smoke test, not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e


def test_harness_runs_at_tiny_size_and_writes_results(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--sizes", "tiny", "--results",
                           str(results), "--parse-providers", "10",
                           "--next-day-repeats", "2"], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    latest = json.loads((results / "latest.json").read_text())
    tiny = latest["sizes"]["tiny"]
    for key in ("dag_vs_pandas", "data_stages_vs_duckdb_ideal", "peak_rss_gib", "roc_auc", "baseline_roc_auc"):
        assert tiny[key] is not None, key
    assert tiny["dag_outcome"] == "# Run summary: COMPLETE"
    assert tiny["scoring_dag"]["outcome"] == "# Run summary: COMPLETE"
    assert "score" in tiny["scoring_dag"]["stage_seconds"]
    assert 0 < tiny["dag"]["orchestration_seconds"] < tiny["dag"]["seconds"]
    assert tiny["next_day"]["increment"]["outcome"] == "# Run summary: COMPLETE"
    assert tiny["next_day"]["full_extract"]["outcome"] == "# Run summary: COMPLETE"
    for kind in ("full_extract", "increment"):  # each run again from the same state, and complete every time
        run = tiny["next_day"][kind]
        assert len(run["runs_seconds"]) == 2 and run["outcomes"] == ["# Run summary: COMPLETE"], run
        assert run["seconds"] in run["runs_seconds"]
    parse = latest["parse"]["10"]
    assert parse["dags"] == 21 and parse["errors"] == 0  # and maintenance
    assert parse["task_parse"]["dags"] == 2 and parse["task_parse"]["errors"] == 0  # its provider's two DAGs
    assert parse["cpu_seconds"] > 0 and any("factory.py" in name for name, _ in parse["profile_share_of_total"])
    markdown = (results / "latest.md").read_text()
    assert markdown.startswith("# BatchOps benchmark")
    assert "the parts both runs share" in markdown or "within 0.35x" in markdown


def test_rollup_comparison_gives_every_variant_the_whole_history_rows(tmp_path):
    """scripts/bench_rollup.py's rollups (a cold summary, yesterday's state carried forward) must give exactly the
    aggregates of one GROUP BY over the whole history, corrections included, or its timings mean nothing."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_rollup.py"), "--customers", "3000",
                           "--transactions", "60000", "--repeats", "1", "--corrections", "0.005",
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(next(tmp_path.glob("rollup_*.json")).read_text())
    assert result["corrected"] > 0 and result["removed"] > 0 and result["todays_rows"] > result["corrected"]
    variants = result["variants"]
    for name, variant in variants.items():
        assert variant["rows_differing_from_whole_history"] == 0, name
        assert variant["rows"] == variants["whole_history"]["rows"] > 0, name
    # most customers were carried forward, not aggregated again: the state was used
    assert 0 < variants["running_state"]["customers_aggregated_again"] < variants["whole_history"]["rows"] / 2


def test_year_simulation_runs_two_days_and_records_what_the_issue_asks(tmp_path):
    """scripts/bench_daily.py (the committed year's proof) at two days: a model day and a scoring day, each
    COMPLETE, with the fields of every day the year's JSON holds."""
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_daily.py"), "--days", "2", "--customers",
                           "200", "--results", str(results), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    year = json.loads((results / "daily_year.json").read_text())
    assert [(d["day"], d["pipeline"], d["outcome"]) for d in year["days"]] == [
        (1, "propensity_model", "COMPLETE"), (2, "propensity_scoring", "COMPLETE")]
    for day in year["days"]:
        assert day["seconds"] > 0 and day["prune_exit"] == 0, day
        for key in ("warehouse_bytes", "runs_bytes", "metadata_bytes"):
            assert day[key] > 0, (key, day)
        assert day["rows"]["transactions"] > 0 and day["rows"]["predictions"] > 0, day
    # the second day's drop held only that day's purchases, and they were added to the history
    assert year["days"][1]["rows"]["transactions"] > year["days"][0]["rows"]["transactions"]
    assert year["one_load_bytes"] > 0
