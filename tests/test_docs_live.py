"""docs/operate.md's live blocks, run as written and in order, in a fresh copy of the repository against the
Airflow that scripts/run_local_stack.sh runs (airflow standalone: SQLite, LocalExecutor), with
AIRFLOW_PORT set as a user would. Between blocks the test waits for the runs a block started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from airflow_stack import free_port, shell_environment
from test_readme_commands import readme_block

from conftest import REPO

pytestmark = pytest.mark.e2e
# run_local_stack.sh without setup_env.sh (it would re-point the shared .venv at the copy)
START = "source scripts/airflow_env.sh && exec python -m batchops.localstack run"


class Live:
    def __init__(self, copy: Path, port: int, env: dict[str, str]):
        self.copy, self.port, self.env = copy, port, env
        self.url = f"http://localhost:{port}"
        self._token: str | None = None

    def password(self) -> str:
        return json.loads((self.copy / "airflow_home" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

    def request(self, path: str) -> dict:
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.password()}).encode()
            token_request = urllib.request.Request(f"{self.url}/auth/token", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(token_request, timeout=30) as answer:
                self._token = json.load(answer)["access_token"]
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}{path}", headers={
                "Authorization": f"Bearer {self._token}"}), timeout=30) as answer:
            return json.load(answer)

    def wait(self, condition, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                value = condition()
            except (OSError, urllib.error.URLError, KeyError, json.JSONDecodeError):
                value = None
            if value:
                return value
            time.sleep(2)
        log = (self.copy / "standalone.log").read_text()[-4000:]
        raise AssertionError(f"{what} did not happen within {seconds:.0f}s; standalone log tail:\n{log}")

    def runs(self, dag_id: str, run_type: str) -> list[dict]:
        return self.request(f"/api/v2/dags/{dag_id}/dagRuns?run_type={run_type}")["dag_runs"]

    def wait_for_success(self, dag_id: str, run_type: str, count: int = 1) -> list[dict]:
        def finished():
            runs = self.runs(dag_id, run_type)
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return runs if len(runs) >= count and len(done) == len(runs) else None
        runs = self.wait(finished, 600, f"{count} {run_type} run(s) of {dag_id}")
        assert all(r["state"] == "success" for r in runs), runs
        return runs

    def block(self, name: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block(name)], cwd=self.copy, env=self.env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"block {name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    copy = tmp_path_factory.mktemp("docs_live") / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
        target.chmod((REPO / name).stat().st_mode)
    (copy / ".venv").symlink_to(REPO / ".venv")
    port = free_port()
    env = shell_environment()
    env["AIRFLOW_PORT"] = str(port)  # what a user sets to pick the port
    server_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                  "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                  "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port())}
    with (copy / "standalone.log").open("w") as log:
        server = subprocess.Popen(["bash", "-c", START], cwd=copy, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    stack = Live(copy, port, env)
    try:
        stack.wait(lambda: stack.request("/api/v2/dags/provider_a__propensity_model")["dag_id"], 240,
                   "the local stack serving provider_a's DAG")
        yield stack
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_operate_blocks_run_as_written_against_the_local_stack(live):
    live.block("operate-cli")
    live.wait_for_success("provider_a__propensity_model", "manual")
    live.block("operate-rest")
    live.wait_for_success("provider_b__propensity_model", "manual")
    live.block("operate-backfill")
    backfilled = live.wait_for_success("provider_b__propensity_scoring", "backfill", count=2)
    assert len(backfilled) == 2
    output = live.block("operate-agent")
    assert "triggered provider_b__propensity_scoring run" in output and ": success" in output, output
    assert "artifacts: " in output
