"""End to end: whole DAGs through `airflow dags test` (SQLite metadata), checked by their artifacts
and the warehouse. Tests in this module share one project and run in order."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from conftest import make_drop
from dags_test_stack import Stack

pytestmark = pytest.mark.e2e

RUN_ARTIFACTS = ["plan.json", "logs.jsonl", "dq_report.json", "dq_report.md", "metrics.json", "model/model.pkl",
                 "model/model_meta.json", "predictions/predictions.parquet", "predictions/predictions.csv",
                 "run_summary.md", "roc_curve.png", "score_histogram.png"]
SCORING_ARTIFACTS = [a for a in RUN_ARTIFACTS if not a.startswith(("metrics", "model", "roc"))]


def task_states(output: str) -> dict[str, str]:
    """Final state of each task, from the `dags test` log lines."""
    states = {}
    for line in output.splitlines():
        if "[DAG TEST] end task task_id=" in line:
            task = line.split("task_id=")[1].split()[0]
            states[task] = "ended"
    return states


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    return Stack(tmp_path_factory.mktemp("e2e"))


def csv_rows(path: Path) -> int:
    return sum(1 for _ in path.open()) - 1


def test_propensity_model_runs_end_to_end_for_provider_a(stack):
    files = make_drop(stack.settings, "provider_a", date(2026, 2, 1), customers=800)
    code, output, run_dir = stack.dags_test("provider_a__propensity_model", "2026-02-01")
    assert code == 0, output[-4000:]
    for artifact in RUN_ARTIFACTS:
        assert (run_dir / artifact).exists(), artifact
    summary = (run_dir / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: COMPLETE")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["snapshot_date"] == "2026-02-01" and plan["snapshot_date_source"] == "conf.snapshot_date"
    assert {"provider_config", "defaults", "pipeline_config", "sql:features.sql"} <= set(plan["files"])
    assert stack.warehouse_rows("provider_a", "transactions", "2026-02-01") == (csv_rows(files["transactions"]),) * 2
    assert stack.warehouse_rows("provider_a", "predictions", "2026-02-01") == (800, 800)
    events = [json.loads(line) for line in (run_dir / "logs.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in events if e["event"] == "stage_finished"} >= {"ingest", "load", "build_features",
                                                                             "train", "score"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["roc_auc"] > 0.7 and metrics["promotion"]["status"] == "approved"


def test_rerunning_the_same_snapshot_leaves_the_same_rows(stack):
    before = {t: stack.warehouse_rows("provider_a", t, "2026-02-01") for t in ("customers", "transactions")}
    code, output, _ = stack.dags_test("provider_a__propensity_model", "2026-02-01")
    assert code == 0, output[-4000:]
    after = {t: stack.warehouse_rows("provider_a", t, "2026-02-01") for t in ("customers", "transactions")}
    assert after == before


def test_scoring_pipeline_uses_the_approved_model(stack):
    make_drop(stack.settings, "provider_a", date(2026, 2, 2), customers=800, seed=11)
    code, output, run_dir = stack.dags_test("provider_a__propensity_scoring", "2026-02-02")
    assert code == 0, output[-4000:]
    for artifact in SCORING_ARTIFACTS:
        assert (run_dir / artifact).exists(), artifact
    assert "provider_a__propensity_model__20260201" in (run_dir / "run_summary.md").read_text()
    assert stack.warehouse_rows("provider_a", "predictions", "2026-02-02") == (800, 800)


def test_both_pipelines_run_for_provider_b(stack):
    make_drop(stack.settings, "provider_b", date(2026, 2, 1), customers=800)
    code, output, run_dir = stack.dags_test("provider_b__propensity_model", "2026-02-01")
    assert code == 0, output[-4000:]
    assert all((run_dir / a).exists() for a in RUN_ARTIFACTS)
    code, output, run_dir = stack.dags_test("provider_b__propensity_scoring", "2026-02-01")
    assert code == 0, output[-4000:]
    assert stack.warehouse_rows("provider_b", "predictions", "2026-02-01") == (800, 800)


def test_dq_failure_blocks_loading_training_and_scoring(stack):
    make_drop(stack.settings, "provider_a", date(2026, 2, 3), customers=500, defect="duplicate_keys")
    code, output, run_dir = stack.dags_test("provider_a__propensity_model", "2026-02-03")
    assert code == 0, output[-4000:]  # a blocked run is a handled outcome, not a crash
    summary = (run_dir / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: BLOCKED") and "unique_key" in summary
    for task in ("load", "build_features", "train", "wait_for_model", "score"):
        assert f"| {task} | skipped |" in summary, task
    report = json.loads((run_dir / "dq_report.json").read_text())
    assert not report["passed"] and any(c["check"] == "unique_key" and not c["passed"] for c in report["checks"])
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "predictions").exists()
    with duckdb.connect(str(stack.settings.warehouse_dir / "provider_a.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM load_audit WHERE snapshot_date = DATE '2026-02-03'").fetchone() == (0,)


def test_provider_c_with_a_scanned_pdf_statement_runs_end_to_end(stack):
    files = make_drop(stack.settings, "provider_c", date(2026, 2, 1), customers=200)
    assert files["transactions"].suffix == ".pdf"
    code, output, run_dir = stack.dags_test("provider_c__propensity_model", "2026-02-01")
    assert code == 0, output[-4000:]
    assert (run_dir / "run_summary.md").read_text().startswith("# Run summary: COMPLETE")
    report = json.loads((run_dir / "ocr_report_transactions.json").read_text())
    dq = json.loads((run_dir / "dq_report.json").read_text())
    ocr_checks = {c["metric"]: c for c in dq["checks"] if c["check"] in ("ocr_quality", "ocr_pages")}
    assert set(ocr_checks) == {"invalid_cell_fraction", "low_confidence_cell_fraction", "pages_with_unread_rows"}
    assert all(c["passed"] for c in ocr_checks.values()), ocr_checks
    assert report["rows"] == stack.warehouse_rows("provider_c", "transactions", "2026-02-01")[0]
    assert sum(report["rows_per_page"].values()) == report["rows"]
    markdown = (run_dir / "dq_report.md").read_text()
    for cell in report["flagged_cells"]:  # every flagged cell's row is in the DQ report people read
        assert f"| {cell['page']} | {cell['row']} | {cell['column']} | {cell['kind']} |" in markdown
    assert stack.warehouse_rows("provider_c", "predictions", "2026-02-01") == (200, 200)


def test_scoring_without_an_approved_model_fails_clearly(stack, bad_input):
    pipeline = stack.settings.pipelines_dir / "propensity_scoring.yaml"
    pipeline.write_text(pipeline.read_text().replace("poke_interval_seconds: 60", "poke_interval_seconds: 1")
                        .replace("timeout_seconds: 3600", "timeout_seconds: 3"))
    make_drop(stack.settings, "provider_b", date(2026, 1, 15), customers=300)  # before any trained model
    code, output, run_dir = stack.dags_test("provider_b__propensity_scoring", "2026-01-15")
    assert code != 0
    assert "Run the DAG provider_b__propensity_model" in output
    summary = (run_dir / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: FAILED") and "| wait_for_model | failed |" in summary
    assert "wait_for_model: AirflowSensorTimeout: no approved model" in summary  # the cause, not "see the task log"
    assert not (run_dir / "predictions").exists()
    message = next(line for line in output.splitlines() if "appeared within" in line).strip()
    bad_input.record("model", "no approved model (sensor timeout)", f"wait_for_model fails: {message}",
                     kept="no predictions written; summary says FAILED")


def test_a_missing_model_file_found_by_the_sensor_is_named_in_the_summary(stack, bad_input):
    from batchops.models import find_approved_model

    if find_approved_model(stack.settings, "provider_a", "propensity_model", date(2026, 2, 2)) is None:
        make_drop(stack.settings, "provider_a", date(2026, 2, 1), customers=800)  # (this test run alone)
        assert stack.dags_test("provider_a__propensity_model", "2026-02-01")[0] == 0
    if not (stack.settings.data_dir / "provider_a" / "2026-02-02").exists():
        make_drop(stack.settings, "provider_a", date(2026, 2, 2), customers=800, seed=11)
    approved = find_approved_model(stack.settings, "provider_a", "propensity_model", date(2026, 2, 2))
    kept = approved.path.read_bytes()
    approved.path.unlink()
    try:
        code, output, run_dir = stack.dags_test("provider_a__propensity_scoring", "2026-02-02")
    finally:
        approved.path.write_bytes(kept)
    assert code != 0
    summary = (run_dir / "run_summary.md").read_text()
    assert "| wait_for_model | failed |" in summary
    cause = summary.split("**")[1]
    assert f"wait_for_model: ModelIntegrityError: model {approved.model_id}" in cause and "is missing" in cause
    bad_input.record("model", "approved model's file missing when wait_for_model looks",
                     f"run_summary.md: {cause}".replace(str(stack.settings.home), "$BATCHOPS_HOME"),
                     kept="no predictions written; summary names the error")
