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
    assert (results / "latest.md").read_text().startswith("# BatchOps benchmark")
