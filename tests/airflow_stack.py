"""A real Airflow deployment for tests: api-server, scheduler and dag-processor as separate processes
(LocalExecutor, SQLite metadata by default), driven through the CLI and the REST API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from batchops.settings import Settings

from conftest import REPO

ADMIN_PASSWORD = "test-admin-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AirflowStack:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None):
        for folder in ("configs", "pipelines", "sql"):
            shutil.copytree(REPO / "include" / folder, root / "include" / folder)
        defaults = root / "include" / "configs" / "_defaults.yaml"
        defaults.write_text(defaults.read_text().replace("retries: 1", "retries: 0"))
        self.root = root
        self.settings = Settings.from_env(default_home=root, env={})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        airflow_home = root / "airflow_home"
        airflow_home.mkdir()
        (airflow_home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": ADMIN_PASSWORD}))
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("BATCHOPS_", "AIRFLOW__"))}
        self.env.update({
            "BATCHOPS_HOME": str(root), "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": "batchops-test-jwt-secret-0123456789",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            **(extra_env or {}),
        })
        self.processes: list[subprocess.Popen] = []
        self._token: str | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self, components=("api-server", "scheduler", "dag-processor")) -> AirflowStack:
        self.cli("db", "migrate")
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        for component in components:
            args = ["airflow", *component.split()]
            if component == "api-server":
                args += ["--port", str(self.port)]
            handle = (logs / f"{component.replace(' ', '_')}.log").open("w")
            self.processes.append(subprocess.Popen(args, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        self.wait_for(lambda: self._health_ok(), 120, "api-server health")
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "logs").glob("*.log")))

    # ------------------------------------------------------------ helpers
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["airflow", *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return done

    @staticmethod
    def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def _health_ok(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def token(self) -> str:
        if self._token is None:
            self._token = self.request("POST", "/auth/token", {"username": "admin", "password": ADMIN_PASSWORD},
                                       auth=False)["access_token"]
        return self._token

    def request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:2000]}") from exc

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        def parsed():
            try:
                return self.request("GET", f"/api/v2/dags/{dag_id}")
            except AssertionError:
                return None
        self.wait_for(parsed, timeout, f"{dag_id} to be parsed", interval=2)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished():
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None
        return self.wait_for(finished, timeout, f"run {run_id} of {dag_id}", interval=2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        quoted = urllib.request.quote(run_id, safe="")
        instances = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in instances}
