"""The docker-compose deployment, proven natively: the compose file's Airflow environment with
CeleryExecutor, a fresh PostgreSQL database and Redis; api-server, scheduler, dag-processor,
triggerer and a celery worker each as its own process. Tests share the stack and run in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime

import duckdb
import pytest

from airflow_stack import ADMIN_PASSWORD, AirflowStack
from batchops.artifacts import run_dir_for

from conftest import REPO, make_drop

pytestmark = pytest.mark.e2e
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")
RESUME_DAG = "provider_a__propensity_scoring"
NO_DROP_DAG = "provider_c__propensity_scoring"
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    deployment = AirflowStack.from_compose(tmp_path_factory.mktemp("celery"),
                                           {"BATCHOPS_FAIL_ONCE": f"{RESUME_DAG}.score"})
    try:
        # Drops for the manual runs, and for today: unpausing a DAG makes the scheduler run it for today.
        for provider in ("provider_a", "provider_b"):
            make_drop(deployment.settings, provider, date(2026, 2, 1), customers=600)
            make_drop(deployment.settings, provider, TODAY, customers=400, seed=5)
        # provider_c gets no drop for today, and waits for one only a minute.
        config = deployment.settings.config_dir / "provider_c.yaml"
        config.write_text(config.read_text() + "landing_timeout_minutes: 1\nlanding_poke_seconds: 5\n")
        deployment.start(COMPONENTS)
        # provider_c's scheduled run waits out its one-minute landing timeout while the tests before
        # test_a_scheduled_run_whose_drop_never_comes_ends_no_drop_not_failed run (that minute was idle)
        unpause(deployment, NO_DROP_DAG)
        yield deployment
    finally:
        deployment.stop()
        assert all(not _pid_alive(pid) for pid in getattr(deployment, "started_pids", []))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def unpause(stack: AirflowStack, dag_id: str) -> None:
    stack.wait_for_dag(dag_id)
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def warehouse_count(stack, provider: str, sql: str, parameters: list) -> tuple:
    with duckdb.connect(str(stack.settings.warehouse_dir / f"{provider}.duckdb"), read_only=True) as con:
        return con.execute(sql, parameters).fetchone()


def test_executor_is_celery_with_postgres_and_redis(stack):
    assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert stack.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")


def test_cli_trigger_runs_provider_a_with_every_artifact(stack):
    dag_id = "provider_a__propensity_model"
    unpause(stack, dag_id)
    done = stack.cli("dags", "trigger", dag_id, "--conf", json.dumps({"snapshot_date": "2026-02-01"}), "-o", "json")
    run_id = json.loads(done.stdout[done.stdout.index("[{"):])[0]["dag_run_id"]
    assert stack.wait_for_run(dag_id, run_id) == "success", stack.logs()
    run_dir = run_dir_for(stack.settings.runs_dir, dag_id, run_id)
    for artifact in ("plan.json", "logs.jsonl", "dq_report.json", "dq_report.md", "metrics.json", "model/model.pkl",
                     "predictions/predictions.parquet", "run_summary.md"):
        assert (run_dir / artifact).exists(), artifact
    assert warehouse_count(stack, "provider_a", "SELECT count(*) FROM predictions WHERE snapshot_date = ?",
                           ["2026-02-01"]) == (600,)


def test_rest_trigger_runs_provider_b(stack):
    dag_id = "provider_b__propensity_model"
    unpause(stack, dag_id)
    created = stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                            {"logical_date": None, "conf": {"snapshot_date": "2026-02-01"}})
    assert stack.wait_for_run(dag_id, created["dag_run_id"]) == "success", stack.logs()
    run_dir = run_dir_for(stack.settings.runs_dir, dag_id, created["dag_run_id"])
    assert (run_dir / "run_summary.md").read_text().startswith("# Run summary: COMPLETE")


def test_schedule_creates_and_completes_a_run_by_itself(stack):
    dag_id = "provider_a__propensity_model"  # unpaused above; the scheduler adds today's run on its own
    def scheduled_runs():
        runs = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled")["dag_runs"]
        return runs or None
    run = stack.wait_for(scheduled_runs, 120, "a scheduled run", interval=2)[0]
    assert stack.wait_for_run(dag_id, run["dag_run_id"]) == "success", stack.logs()
    plan = json.loads((run_dir_for(stack.settings.runs_dir, dag_id, run["dag_run_id"]) / "plan.json").read_text())
    assert plan["snapshot_date"] == run["data_interval_end"][:10] == TODAY.isoformat()
    assert plan["snapshot_date_source"] == "data_interval_end of the scheduled run"


def test_backfill_scores_the_drops_of_its_dates(stack):
    """docs/operate.md's backfill: drops for its dates, the DAG unpaused, a model approved before them
    (test_rest_trigger_runs_provider_b trained it)."""
    dag_id = "provider_b__propensity_scoring"
    for day, seed in ((date(2026, 2, 2), 11), (date(2026, 2, 3), 12)):
        make_drop(stack.settings, "provider_b", day, customers=300, seed=seed)
    unpause(stack, dag_id)
    stack.cli("backfill", "create", "--dag-id", dag_id, "--from-date", "2026-02-02", "--to-date", "2026-02-03")
    def backfill_runs():
        runs = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=backfill")["dag_runs"]
        return runs if len(runs) == 2 else None
    runs = stack.wait_for(backfill_runs, 120, "two backfill runs", interval=2)
    snapshots = []
    for run in runs:
        assert stack.wait_for_run(dag_id, run["dag_run_id"]) == "success", stack.logs()
        plan = json.loads((run_dir_for(stack.settings.runs_dir, dag_id, run["dag_run_id"]) / "plan.json").read_text())
        snapshots.append(plan["snapshot_date"])
    assert sorted(snapshots) == ["2026-02-02", "2026-02-03"], snapshots  # the snapshot is the logical date
    for day in snapshots:
        assert warehouse_count(stack, "provider_b", "SELECT count(*) FROM predictions WHERE snapshot_date = ?",
                               [day]) == (300,)


def test_a_scheduled_run_whose_drop_never_comes_ends_no_drop_not_failed(stack):
    dag_id = NO_DROP_DAG  # unpaused when the stack started
    def scheduled_runs():
        runs = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled")["dag_runs"]
        return runs or None
    run = stack.wait_for(scheduled_runs, 120, "a scheduled run", interval=2)[0]
    assert stack.wait_for_run(dag_id, run["dag_run_id"]) == "success", stack.logs()  # not red in the grid
    states = stack.task_states(dag_id, run["dag_run_id"])
    assert states["wait_for_drop"] == "skipped" and "failed" not in states.values(), states
    summary = (run_dir_for(stack.settings.runs_dir, dag_id, run["dag_run_id"]) / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: NO DROP") and "statement.pdf" in summary and "customers.csv" in summary


def test_clearing_only_the_failed_task_resumes_a_run(stack):
    unpause(stack, RESUME_DAG)
    created = stack.request("POST", f"/api/v2/dags/{RESUME_DAG}/dagRuns",
                            {"logical_date": None, "conf": {"snapshot_date": "2026-02-01"}})
    run_id = created["dag_run_id"]
    assert stack.wait_for_run(RESUME_DAG, run_id) == "failed", stack.logs()
    assert stack.task_states(RESUME_DAG, run_id)["score"] == "failed"
    cleared = stack.request("POST", f"/api/v2/dags/{RESUME_DAG}/clearTaskInstances",
                            {"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True})
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {"score", "summarize"}
    assert stack.wait_for_run(RESUME_DAG, run_id) == "success", stack.logs()
    # Same rows as a clean run: the scoring DAG used the model approved on 2026-02-01, which already scored
    # that snapshot in the training DAG; predictions are replaced per (snapshot, model), never duplicated.
    assert warehouse_count(stack, "provider_a", "SELECT count(*), count(DISTINCT (customer_id, model_id)) "
                           "FROM predictions WHERE snapshot_date = ?", ["2026-02-01"]) == (600, 600)


@pytest.mark.parametrize("bad_date", ["2026-13-45", "../x"])
def test_invalid_snapshot_date_is_refused_at_trigger_time(stack, bad_date):
    dag_id = "provider_b__propensity_model"
    before = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["total_entries"]
    done = stack.cli("dags", "trigger", dag_id, "--conf", json.dumps({"snapshot_date": bad_date}), check=False)
    assert done.returncode != 0
    assert "snapshot_date" in done.stdout + done.stderr
    with pytest.raises(AssertionError, match="HTTP 400"):
        stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                      {"logical_date": None, "conf": {"snapshot_date": bad_date}})
    assert stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["total_entries"] == before


def test_the_rest_api_refuses_anonymous_requests(stack):
    import urllib.error
    import urllib.parse
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.url}/api/v2/dags/{urllib.parse.quote(RESUME_DAG)}", timeout=10)
    assert refused.value.code == 401


def agent(stack: AirflowStack, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """python agent.py ... against this stack, as a user would run it."""
    base = {**stack.env, "BATCHOPS_AIRFLOW_URL": stack.url, "BATCHOPS_AIRFLOW_USER": "admin",
            "BATCHOPS_AIRFLOW_PASSWORD": ADMIN_PASSWORD, "BATCHOPS_RUNS_DIR": str(stack.settings.runs_dir)}
    return subprocess.run([sys.executable, str(REPO / "agent.py"), "--poll-seconds", "1", *args],
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=600)


def test_agent_run_fails_on_purpose_and_agent_resume_completes_it(stack):
    done = agent(stack, "run", "--provider", "provider_a", "--pipeline", "propensity_scoring",
                 "--snapshot-date", "2026-02-01")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "score           failed" in done.stdout and "agent.py resume --run-id" in done.stdout
    assert "why: score: " in done.stdout and "BATCHOPS_FAIL_ONCE" in done.stdout  # the failing task's error
    run_id = done.stdout.split("triggered provider_a__propensity_scoring run ")[1].split()[0]
    resumed = agent(stack, "resume", "--run-id", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"cleared score, summarize of {RESUME_DAG} run {run_id}" in resumed.stdout
    assert "summarize       success" in resumed.stdout
    assert str(run_dir_for(stack.settings.runs_dir, RESUME_DAG, run_id)) in resumed.stdout


@pytest.mark.parametrize(("args", "env", "message"), [
    (["run", "--provider", "provider_z", "--pipeline", "propensity_model", "--snapshot-date", "2026-02-01"], {},
     "no DAG provider_z__propensity_model"),
    (["run", "--provider", "provider_a", "--pipeline", "propensity_model", "--snapshot-date", "2026-02-30"], {},
     "--snapshot-date '2026-02-30' is not a calendar date"),
    (["resume", "--run-id", "nope"], {"BATCHOPS_AIRFLOW_PASSWORD": "wrong"}, "refused the credentials of user 'admin'"),
    (["resume", "--run-id", "nope"], {}, "no BatchOps DAG has a run 'nope'"),
    (["resume", "--run-id", "x"], {"BATCHOPS_AIRFLOW_URL": "http://127.0.0.1:9"}, "cannot reach Airflow at"),
])
def test_agent_errors_say_what_to_fix(stack, args, env, message):
    done = agent(stack, *args, env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr  # one line

