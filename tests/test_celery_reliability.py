"""Reliability on the CeleryExecutor stack of docker-compose.yaml (run natively, as in
test_celery_stack.py) over a PostgreSQL and a Redis of the test's own, so that they can be crashed
and restarted under running DAG runs: the load matrix, then a Postgres crash and a Redis crash."""

from __future__ import annotations

import time
from datetime import date

import pytest

import load_matrix
from airflow_stack import AirflowStack, PrivateServices
from batchops.artifacts import run_dir_for
from batchops.runlog import read_events

from conftest import make_drop

pytestmark = pytest.mark.e2e
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")


@pytest.fixture(scope="module")
def services():
    private = PrivateServices().start()
    try:
        yield private
    finally:
        private.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, services):
    deployment = AirflowStack.from_compose(tmp_path_factory.mktemp("celery_reliability"),
                                           postgres_port=services.postgres_port, redis_port=services.redis_port)
    # Task messages still in Redis when it dies are gone (no persistence, as in the compose file): the
    # scheduler sends such tasks again once they have been queued this long (default 10 minutes).
    deployment.env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] = "60"
    load_matrix.prepare(deployment)
    # provider_f: provider_b with the shipped default of one retry (the test stacks use none)
    load_matrix.add_provider_like(deployment, "provider_f", "provider_b")
    with (deployment.settings.config_dir / "provider_f.yaml").open("a") as config:
        config.write("retries: 1\n")
    try:
        yield deployment.start(COMPONENTS)
    finally:
        deployment.stop()


def test_four_providers_two_snapshots_and_a_duplicate_trigger_on_celery(stack):
    figures = load_matrix.run_and_check(stack)
    assert figures["most_tasks_at_once"] >= 4, figures


def keep_components_up(stack: AirflowStack) -> list[str]:
    """What `restart: always` in docker-compose.yaml does: start again any component that exited."""
    restarted = []
    for process in list(stack.processes):
        if process.poll() is not None and not getattr(process, "replaced", False):
            process.replaced = True
            stack.restart(process.component)
            restarted.append(process.component)
    return restarted


def state_when_reachable(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    try:
        return stack.run_state(dag_id, run_id)
    except (AssertionError, OSError):  # the API answers 5xx while its database is down
        return None


def wait_through_outage(stack: AirflowStack, dag_id: str, run_id: str,
                        timeout: float = 900) -> tuple[str, list[str]]:
    deadline, restarted = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        restarted += keep_components_up(stack)
        state = state_when_reachable(stack, dag_id, run_id)
        if state in ("success", "failed"):
            return state, restarted
        time.sleep(2)
    raise AssertionError(f"run {run_id} not finished after {timeout}s\n{stack.logs()}")


@pytest.mark.parametrize(("service", "provider", "snapshot"), [
    ("postgres", "provider_b", date(2026, 2, 15)),
    ("redis", "provider_b", date(2026, 2, 22)),
    ("redis", "provider_f", date(2026, 2, 22)),  # with one retry, as shipped
])
def test_database_or_broker_crash_mid_run_then_the_run_completes(stack, services, service, provider, snapshot,
                                                                  bad_input):
    dag_id = f"{provider}__propensity_model"
    retries = 1 if provider == "provider_f" else 0
    stack.wait_for_dag(dag_id)
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    make_drop(stack.settings, provider, snapshot, customers=300, seed=snapshot.day)
    run_id = stack.trigger(dag_id, {"snapshot_date": snapshot.isoformat()})
    run_dir = run_dir_for(stack.settings.runs_dir, dag_id, run_id)

    def a_stage_is_running():
        return any(e["event"] == "stage_started" and e["stage"] in ("ingest", "validate", "load")
                   for e in read_events(run_dir / "logs.jsonl"))

    AirflowStack.wait_for(a_stage_is_running, 180, "the run to reach ingest", interval=0.2)
    crash, start = {"postgres": (services.crash_postgres, services.start_postgres),
                    "redis": (services.crash_redis, services.start_redis)}[service]
    crash()
    time.sleep(10)
    start()
    state, restarted = wait_through_outage(stack, dag_id, run_id)
    cleared: set[str] = set()
    if state == "failed":  # allowed, if a clear finishes it
        states = stack.task_states(dag_id, run_id)
        cleared = stack.clear_failed(dag_id, run_id)
        assert cleared, states
        state, more = wait_through_outage(stack, dag_id, run_id)
        restarted += more
    assert state == "success", stack.logs()
    if retries:
        assert not cleared, "with one retry the run should have completed by itself"
    facts = load_matrix.warehouse_facts(stack, provider, snapshot)
    expected = load_matrix.expected_rows(stack, provider, snapshot, dag_id, run_id)
    assert facts["customers"] == (expected["customers"],) * 2 and facts["predictions"] == (300, 300)
    assert facts["transactions"] == (expected["transactions"],) * 2
    outcome = (f"{service} down 10 s mid-run (retries: {retries}); components restarted as compose would: "
               f"{restarted or 'none'}; "
               + (f"run failed, cleared {sorted(cleared)}, then succeeded" if cleared else "run succeeded by itself"))
    print(outcome)
    bad_input.record("faults", f"{service} crashed and restarted under a Celery run (retries: {retries})", outcome,
                     kept=f"exact rows ({expected['customers']} customers, {expected['transactions']} transactions)")
