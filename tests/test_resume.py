"""Resume: a run whose score task fails is completed by clearing only its failed tasks, through a
real scheduler (LocalExecutor), the CLI trigger and the REST clearTaskInstances call."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

from airflow_stack import AirflowStack
from batchops.artifacts import run_dir_for

from conftest import make_drop

pytestmark = pytest.mark.e2e
DAG_ID = "provider_a__propensity_model"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    deployment = AirflowStack(tmp_path_factory.mktemp("resume"), {"BATCHOPS_FAIL_ONCE": "score"})
    try:
        yield deployment.start()
    finally:
        deployment.stop()


def test_clearing_the_failed_score_task_completes_the_run_without_duplicates(stack):
    files = make_drop(stack.settings, "provider_a", date(2026, 2, 1), customers=700)
    stack.wait_for_dag(DAG_ID)
    stack.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    triggered = stack.cli("dags", "trigger", DAG_ID, "--conf", json.dumps({"snapshot_date": "2026-02-01"}),
                          "-o", "json")
    run_id = json.loads(triggered.stdout[triggered.stdout.index("[{"):])[0]["dag_run_id"]

    assert stack.wait_for_run(DAG_ID, run_id) == "failed", stack.logs()
    states = stack.task_states(DAG_ID, run_id)
    assert states["score"] == "failed" and states["train"] == "success" and states["summarize"] == "failed"

    cleared = stack.request("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
                            {"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True})
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {"score", "summarize"}
    assert stack.wait_for_run(DAG_ID, run_id) == "success", stack.logs()

    run_dir = run_dir_for(stack.settings.runs_dir, DAG_ID, run_id)
    assert (run_dir / "run_summary.md").read_text().startswith("# Run summary: COMPLETE")
    events = [json.loads(line) for line in (run_dir / "logs.jsonl").read_text().splitlines()]
    score_events = [(e["event"], e.get("try_number")) for e in events if e["stage"] == "score" and
                    e["event"].startswith("stage_")]
    assert score_events == [("stage_started", 1), ("stage_failed", 1), ("stage_started", 2), ("stage_finished", 2)]
    with duckdb.connect(str(stack.settings.warehouse_dir / "provider_a.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT customer_id) FROM predictions").fetchone() == (700, 700)
        transactions = con.execute("SELECT count(*), count(DISTINCT transaction_id) FROM transactions").fetchone()
    assert transactions == (sum(1 for _ in files["transactions"].open()) - 1,) * 2


def test_resume_refuses_a_run_id_that_several_dags_share(stack, capsys):
    """Scheduled run ids (scheduled__<date>) are the same in every DAG scheduled that day: resume by run id
    alone lists the DAGs and clears nothing; --dag-id picks one. (Airflow reserves scheduled__ ids for the
    scheduler, so the test shares a manual id the same way.)"""
    from airflow_stack import ADMIN_PASSWORD
    from batchops.client import main

    shared = "nightly__2026-12-03"
    dags = ["provider_a__propensity_scoring", "provider_b__propensity_scoring"]
    for dag_id in dags:
        stack.wait_for_dag(dag_id)
        stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                      {"dag_run_id": shared, "logical_date": None, "conf": {"snapshot_date": "2026-12-03"}})
    environment = {"BATCHOPS_AIRFLOW_URL": stack.url, "BATCHOPS_AIRFLOW_USER": "admin",
                   "BATCHOPS_AIRFLOW_PASSWORD": ADMIN_PASSWORD}
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        assert main(["resume", "--run-id", shared], emit=lines.append) == 2 and not lines
        message = capsys.readouterr().err
        assert "exists in 2 BatchOps DAGs" in message and all(dag_id in message for dag_id in dags)
        assert f"--dag-id {dags[0]}" in message
        # with --dag-id the one named is looked at (the run is queued in a paused DAG: nothing failed to clear)
        assert main(["resume", "--run-id", shared, "--dag-id", dags[1]], emit=lines.append) == 0
        assert f"run {shared} of {dags[1]} has no failed tasks to clear" in " ".join(lines)
    for dag_id in dags:
        assert stack.run_state(dag_id, shared) == "queued"
