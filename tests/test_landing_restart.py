"""No lost day on restart: a scheduled run waiting for its drop survives the scheduler and the API server being
restarted (the API server comes back last, as it does: the sensor's next try meets it down), and carries on
when the drop lands."""

from __future__ import annotations

import time

import pytest

from airflow_stack import AirflowStack

from conftest import make_drop

pytestmark = pytest.mark.e2e
DAG_ID = "provider_a__propensity_scoring"


@pytest.fixture
def stack(tmp_path):
    deployment = AirflowStack(tmp_path / "stack")
    configs = deployment.settings.config_dir
    for other in ("provider_b", "provider_c"):
        (configs / f"{other}.yaml").unlink()
    config = configs / "provider_a.yaml"
    # a run every minute, polled every 5 s; its own errors retried after 5 s
    config.write_text(config.read_text() + "schedule: '* * * * *'\nlanding_poke_seconds: 5\n"
                      "landing_timeout_minutes: 20\nlanding_wait_retries: 3\nlanding_wait_retry_seconds: 5\n")
    deployment.env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
    try:
        yield deployment.start()
    finally:
        deployment.stop()


def waiting_run(stack: AirflowStack) -> tuple[str, str]:
    """(run id, snapshot) of the first scheduled run whose wait_for_drop is waiting."""
    runs = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=run_after")["dag_runs"]
    for run in runs:
        if run["run_type"] == "scheduled" and stack.task_states(DAG_ID, run["dag_run_id"]).get("wait_for_drop") in (
                "up_for_reschedule", "running"):
            return run["dag_run_id"], run["data_interval_end"][:10]
    return None


def test_a_restart_while_runs_wait_for_their_drop_keeps_them_waiting(stack):
    stack.wait_for_dag(DAG_ID)
    stack.cli("dags", "unpause", DAG_ID)
    run_id, snapshot = stack.wait_for(lambda: waiting_run(stack), 240, "a scheduled run waiting for its drop", 2)
    stack.kill("scheduler")
    stack.kill("api-server")
    stack.restart("scheduler")  # the scheduler is back first; the sensor's next pokes meet no API server
    time.sleep(20)
    stack.restart("api-server")
    stack.wait_for(stack._health_ok, 120, "api-server health")
    time.sleep(20)
    states = stack.task_states(DAG_ID, run_id)
    assert states["wait_for_drop"] in ("up_for_reschedule", "running", "up_for_retry", "scheduled", "queued"), states
    assert stack.run_state(DAG_ID, run_id) == "running"
    from datetime import date

    make_drop(stack.settings, "provider_a", date.fromisoformat(snapshot), customers=100)
    stack.wait_for(lambda: stack.task_states(DAG_ID, run_id)["wait_for_drop"] == "success", 180,
                   "wait_for_drop to see the drop", 2)
