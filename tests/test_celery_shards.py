"""Scale-out proven natively: two Celery workers as separate processes, each with its own
BATCHOPS_WAREHOUSE_DIR, consuming queues shard_a and shard_b; four providers split across them
(`queue` in their configs); runs/ and the metadata DB shared. The four training DAGs triggered at once, then
the four scoring DAGs, run every task on their provider's worker, and each warehouse exists only on its
worker's disk. Then one worker is
killed (kill -9 of its whole process group, as a lost host): its providers' tasks stay queued, never taken by
the other worker, whose runs finish; restarted, it completes them, with no duplicate rows."""

from __future__ import annotations

import urllib.request
from datetime import date
from pathlib import Path

import duckdb
import pytest

from airflow_stack import AirflowStack, free_port

from conftest import REPO, make_drop

pytestmark = pytest.mark.e2e
SHARDS = {"shard_a": ("provider_a", "provider_b"), "shard_b": ("provider_d", "provider_e")}
PIPELINES = ("propensity_model", "propensity_scoring")
FIRST, SECOND = date(2026, 2, 1), date(2026, 2, 2)
CUSTOMERS = 300


def queue_of(provider: str) -> str:
    return next(queue for queue, providers in SHARDS.items() if provider in providers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    deployment = AirflowStack.from_compose(root)
    configs = deployment.settings.config_dir
    (configs / "provider_c.yaml").unlink()  # the scanned-PDF provider: OCR is not what this test is about
    for copy, source in (("provider_d", "provider_a"), ("provider_e", "provider_b")):
        text = (configs / f"{source}.yaml").read_text().replace(f"provider_id: {source}", f"provider_id: {copy}")
        (configs / f"{copy}.yaml").write_text(text)
    for queue, providers in SHARDS.items():
        for provider in providers:
            config = configs / f"{provider}.yaml"
            config.write_text(config.read_text() + f"queue: {queue}\n")
            for snapshot in (FIRST, SECOND):
                make_drop(deployment.settings, provider, snapshot, customers=CUSTOMERS, seed=7)
    try:
        deployment.start(("api-server", "scheduler", "dag-processor", "triggerer"))
        deployment.workers = {}
        for queue in SHARDS:
            env = {"BATCHOPS_WAREHOUSE_DIR": str(root / f"host_{queue}" / "warehouse"),
                   "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_name.worker_name",
                   "BATCHOPS_TEST_WORKER_NAME": f"host_{queue}", "PYTHONPATH": str(REPO / "tests"),
                   "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            deployment.workers[queue] = env
            deployment._launch(f"celery worker --queues {queue} --celery-hostname {queue}@%h", env, f"worker_{queue}")
        yield deployment
    finally:
        deployment.stop()


def dag_ids() -> list[str]:
    return [f"{provider}__{pipeline}" for providers in SHARDS.values() for provider in providers
            for pipeline in PIPELINES]


def task_instances(stack: AirflowStack, dag_id: str, run_id: str) -> list[dict]:
    quoted = urllib.request.quote(run_id, safe="")
    return stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]


def predictions(stack: AirflowStack, provider: str, snapshot: date) -> tuple[int, int]:
    warehouse = stack.workers[queue_of(provider)]["BATCHOPS_WAREHOUSE_DIR"]
    with duckdb.connect(f"{warehouse}/{provider}.duckdb", read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT customer_id) FROM predictions WHERE snapshot_date = ?",
                           [snapshot]).fetchone()


def test_every_task_runs_on_its_providers_worker_and_each_warehouse_stays_on_its_host(stack):
    for dag_id in dag_ids():
        stack.wait_for_dag(dag_id)
        stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    # the four training DAGs at once (the scoring DAGs' routing is checked by the next test's runs)
    runs = {dag_id: stack.trigger(dag_id, {"snapshot_date": FIRST.isoformat()}) for dag_id in dag_ids()
            if dag_id.endswith("__propensity_model")}
    for dag_id, run_id in runs.items():
        assert stack.wait_for_run(dag_id, run_id, timeout=900) == "success", (dag_id, stack.logs())
    for dag_id, run_id in runs.items():
        provider = dag_id.split("__")[0]
        queue = queue_of(provider)
        ran = [ti for ti in task_instances(stack, dag_id, run_id) if ti["state"] == "success"]
        assert ran
        for ti in ran:
            assert (ti["queue"], ti["hostname"]) == (queue, f"host_{queue}"), (dag_id, ti["task_id"])
    for queue, providers in SHARDS.items():
        other = next(q for q in SHARDS if q != queue)
        for provider in providers:
            assert (stack.root / f"host_{queue}" / "warehouse" / f"{provider}.duckdb").is_file()
            assert not (stack.root / f"host_{other}" / "warehouse" / f"{provider}.duckdb").exists()
            assert predictions(stack, provider, FIRST) == (CUSTOMERS, CUSTOMERS)
    assert not (stack.root / "warehouse").exists() or not any((stack.root / "warehouse").glob("*.duckdb"))
    # the api-server reads the shared runs/ but holds no warehouse: each provider's page says where its registry is
    def page(path: str) -> str:
        return urllib.request.urlopen(urllib.request.Request(f"{stack.url}/batchops/{path}", headers={
            "Authorization": f"Bearer {stack.token()}"}), timeout=60).read().decode()

    calendar = page("")
    for queue, providers in SHARDS.items():
        assert f'<td class="queue">{queue}</td>' in calendar
        for provider in providers:
            own = page(f"providers/{provider}")
            assert f"registry not on this host: the warehouse lives on the worker of queue {queue}" in own
            assert f"<td>{queue}</td>" in own and "COMPLETE" in own


def test_a_lost_worker_holds_its_providers_tasks_until_it_returns(stack):
    stack.kill_host("worker_shard_b")
    runs = {}
    for providers in SHARDS.values():
        for provider in providers:
            dag_id = f"{provider}__propensity_scoring"
            runs[dag_id] = stack.trigger(dag_id, {"snapshot_date": SECOND.isoformat()})
    for dag_id, run_id in runs.items():
        if queue_of(dag_id.split("__")[0]) == "shard_a":
            assert stack.wait_for_run(dag_id, run_id, timeout=600) == "success", stack.logs()
    for dag_id, run_id in runs.items():
        if queue_of(dag_id.split("__")[0]) == "shard_b":
            instances = task_instances(stack, dag_id, run_id)
            assert stack.run_state(dag_id, run_id) in ("queued", "running")
            assert all(ti["state"] in (None, "scheduled", "queued") for ti in instances), instances
            assert not any(ti["hostname"] for ti in instances)  # the shard_a worker never took one
    stack.restart("worker_shard_b")
    for dag_id, run_id in runs.items():
        assert stack.wait_for_run(dag_id, run_id, timeout=600) == "success", (dag_id, stack.logs())
        provider = dag_id.split("__")[0]
        queue = queue_of(provider)
        assert {ti["hostname"] for ti in task_instances(stack, dag_id, run_id) if ti["state"] == "success"} == \
            {f"host_{queue}"}
        assert predictions(stack, provider, SECOND) == (CUSTOMERS, CUSTOMERS)
        assert predictions(stack, provider, FIRST) == (CUSTOMERS, CUSTOMERS)


def test_moving_a_provider_to_the_other_shard_loses_nothing(stack):
    """docs/deploy.md, "Moving a provider to another shard", step by step: drain, back up under the provider
    lock on the old host, restore that file and copy the model store on the new host, change `queue`, resume."""
    import json
    import shutil
    import subprocess
    import sys
    import time

    provider, old, new = "provider_e", "shard_b", "shard_a"
    dags = [f"{provider}__{pipeline}" for pipeline in PIPELINES]
    for dag_id in dags:  # 1. drain: no task running or queued (a scheduled run waiting for its drop touches nothing)
        stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
        stack.wait_for(lambda dag_id=dag_id: not stack.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?state=running&state=queued")["task_instances"],
            300, f"{dag_id} drained", interval=3)

    def batchops(host: str, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "batchops", *args, "--json"], capture_output=True, text=True,
                              env={**stack.env, **stack.workers[host]}, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout[done.stdout.index("{"):])

    backup = batchops(old, "backup", "--provider", provider)["backup"]  # 2. under the provider lock
    old_dir, new_dir = (Path(stack.workers[h]["BATCHOPS_WAREHOUSE_DIR"]) for h in (old, new))
    carried = new_dir.parent / "carried" / Path(backup).name  # 3. what scp/rsync would do between hosts
    carried.parent.mkdir(parents=True)
    shutil.copy2(backup, carried)
    shutil.copy2(f"{backup}.manifest.json", f"{carried}.manifest.json")  # restore verifies the copy against it
    shutil.copytree(old_dir / "models" / provider, new_dir / "models" / provider)
    batchops(new, "restore", "--provider", provider, "--backup", str(carried))
    config = stack.settings.config_dir / f"{provider}.yaml"  # 4. the new queue
    config.write_text(config.read_text().replace(f"queue: {old}", f"queue: {new}"))
    stack.cli("dags", "reserialize")  # now, not at the DAG processor's next parse (min_file_process_interval: 120 s)
    for dag_id in dags:
        stack.wait_for(lambda dag_id=dag_id: {t["queue"] for t in stack.request(
            "GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]} == {new}, 180, f"{dag_id} re-parsed", interval=3)
        stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})  # 5. resume
    (old_dir / f"{provider}.duckdb").rename(old_dir / f"{provider}.duckdb.moved-{int(time.time())}")
    SHARDS[old], SHARDS[new] = ("provider_d",), (*SHARDS[new], provider)
    third = date(2026, 2, 3)
    make_drop(stack.settings, provider, third, customers=CUSTOMERS, seed=7)
    run_id = stack.trigger(f"{provider}__propensity_scoring", {"snapshot_date": third.isoformat()})
    assert stack.wait_for_run(f"{provider}__propensity_scoring", run_id, timeout=600) == "success", stack.logs()
    assert {ti["hostname"] for ti in task_instances(stack, f"{provider}__propensity_scoring", run_id)
            if ti["state"] == "success"} == {f"host_{new}"}
    for snapshot in (FIRST, SECOND, third):  # the history came along; the approved model scored the new drop
        assert predictions(stack, provider, snapshot) == (CUSTOMERS, CUSTOMERS)
