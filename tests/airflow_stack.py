"""A real Airflow deployment for tests, each component its own process, driven through the CLI and
the REST API: LocalExecutor on SQLite by default, or the CeleryExecutor stack of docker-compose.yaml
run natively against the machine's PostgreSQL and Redis (`AirflowStack.from_compose`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from batchops.settings import Settings

from conftest import REPO

ADMIN_PASSWORD = "test-admin-password"


def shell_environment() -> dict[str, str]:
    """This process's environment without BATCHOPS_* and AIRFLOW* variables: a newcomer's shell, nothing preset."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("BATCHOPS_", "AIRFLOW"))}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's variable syntax: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        current = variables.get(name)
        empty = current is None or (operator and operator.startswith(":") and current == "")
        if operator and operator.endswith("?") and empty:
            raise KeyError(f"{name}: {argument}")
        if operator and operator.endswith("-") and empty:
            return argument
        return current or ""
    return _COMPOSE_VARIABLE.sub(substitute, value)


def compose_airflow_environment(compose_file: Path, variables: dict[str, str]) -> dict[str, str]:
    """The x-airflow-common environment of docker-compose.yaml, interpolated with `variables`."""
    compose = yaml.safe_load(compose_file.read_text())
    return {key: interpolate(str(value), variables) for key, value in compose["x-airflow-common"]["environment"].items()}


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


SERVICE_STARTERS = {
    5432: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    6379: "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no",
}


def ensure_local_services() -> None:
    """PostgreSQL and Redis on their standard ports; start them from the OS packages when down."""
    for port, command in SERVICE_STARTERS.items():
        if not port_open(port):
            subprocess.run(["bash", "-c", command], capture_output=True, text=True)
            AirflowStack.wait_for(lambda port=port: port_open(port), 60, f"a service on port {port}")


class AirflowStack:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None,
                 airflow_env: dict[str, str] | None = None, port: int | None = None):
        for folder in ("configs", "pipelines", "sql"):
            shutil.copytree(REPO / "include" / folder, root / "include" / folder)
        defaults = root / "include" / "configs" / "_defaults.yaml"
        defaults.write_text(defaults.read_text().replace("retries: 1", "retries: 0"))
        self.root = root
        self.settings = Settings.from_env(default_home=root, env={})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        airflow_home = root / "airflow_home"
        airflow_home.mkdir()
        (airflow_home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": ADMIN_PASSWORD}))
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("BATCHOPS_", "AIRFLOW__"))}
        self.env.update(airflow_env or {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": "batchops-test-jwt-secret-0123456789",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
        })
        self.env.update({
            "BATCHOPS_HOME": str(root), "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__PORT": str(self.port),
            # Fast scheduling loops keep the tests short; ports are free ones so stacks never collide.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            **(extra_env or {}),
        })
        self.drop_database: str | None = None
        self.postgres_port = 5432
        passwords_file = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
        if passwords_file:  # what airflow-init does in the compose file
            Path(passwords_file).parent.mkdir(parents=True, exist_ok=True)
            Path(passwords_file).write_text(json.dumps({"admin": ADMIN_PASSWORD}))
        self.processes: list[subprocess.Popen] = []
        self._token: str | None = None

    @classmethod
    def from_compose(cls, root: Path, extra_env: dict[str, str] | None = None, postgres_port: int = 5432,
                     redis_port: int = 6379) -> AirflowStack:
        """The CeleryExecutor stack exactly as docker-compose.yaml configures it, with the compose service
        names mapped to this machine's PostgreSQL/Redis (or private ones), in a fresh Postgres database."""
        if (postgres_port, redis_port) == (5432, 6379):
            ensure_local_services()
        database = f"batchops_it_{uuid.uuid4().hex[:10]}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(postgres_port), "-U", "postgres", "-d", "postgres",
                        "-c", f"CREATE DATABASE {database}"], check=True, capture_output=True)
        variables = {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "trust-auth-ignores-it",
                     "POSTGRES_DB": database, "REDIS_PASSWORD": "", "AIRFLOW_FERNET_KEY": "",
                     "AIRFLOW_JWT_SECRET": f"jwt-{uuid.uuid4().hex}", "AIRFLOW_API_SECRET_KEY": uuid.uuid4().hex,
                     "AIRFLOW_ADMIN_USER": "admin"}
        variables["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
        port = free_port()
        environment = {}
        for key, value in compose_airflow_environment(REPO / "docker-compose.yaml", variables).items():
            value = (value.replace("@postgres:5432", f"@127.0.0.1:{postgres_port}")
                     .replace("@redis:6379", f"@127.0.0.1:{redis_port}")
                     .replace("http://airflow-apiserver:8080", f"http://127.0.0.1:{port}")
                     .replace("/opt/airflow", str(root)))
            environment[key] = value
        stack = cls(root, extra_env, airflow_env=environment, port=port)
        stack.drop_database = database
        stack.postgres_port = postgres_port
        return stack

    # ------------------------------------------------------------ lifecycle
    def start(self, components=("api-server", "scheduler", "dag-processor")) -> AirflowStack:
        self.cli("db", "migrate")
        if "FabAuthManager" in self.env.get("AIRFLOW__CORE__AUTH_MANAGER", ""):  # what compose's airflow-init does
            self.cli("fab-db", "migrate")
            if "admin" not in self.cli("users", "list", "-o", "plain").stdout:
                self.cli("users", "create", "--username", "admin", "--password", ADMIN_PASSWORD, "--role", "Admin",
                         "--email", "admin@localhost", "--firstname", "BatchOps", "--lastname", "Admin")
            synced = subprocess.run([sys.executable, "-m", "batchops", "sync-roles"], env=self.env, capture_output=True,
                                    text=True, timeout=300)
            assert synced.returncode == 0, synced.stderr
        (self.root / "logs").mkdir(exist_ok=True)
        for component in components:
            self._launch(component)
        self.started_pids = [p.pid for p in self.processes]
        self.wait_for(lambda: self._health_ok(), 120, "api-server health")
        return self

    def _launch(self, component: str, env: dict[str, str] | None = None, name: str | None = None) -> subprocess.Popen:
        """Start `airflow <component>`; `env` adds to the stack's environment (say, a worker's own warehouse
        folder), `name` tells two processes of one component apart (logs, kill, restart)."""
        args = ["airflow", *component.split()]
        if component == "api-server":
            args += ["--port", str(self.port)]
        name = name or component
        handle = (self.root / "logs" / f"{name.replace(' ', '_')}.log").open("a")
        process = subprocess.Popen(args, env={**self.env, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        process.component, process.launch = name, (component, env, name)
        self.processes.append(process)
        return process

    def kill(self, component: str) -> int:
        """kill -9 of the component's main process only (its children, e.g. running tasks, are left)."""
        process = next(p for p in self.processes if getattr(p, "component", None) == component and p.poll() is None)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return process.pid

    def kill_host(self, name: str) -> int:
        """kill -9 of the process and every process it started (a host lost: a Celery worker's pool too)."""
        process = next(p for p in self.processes if getattr(p, "component", None) == name and p.poll() is None)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return process.pid

    def restart(self, component: str) -> subprocess.Popen:
        launched = next((p.launch for p in reversed(self.processes) if getattr(p, "component", None) == component),
                        (component, None, None))
        return self._launch(*launched)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            else:  # killed on purpose: its orphaned children still carry its process group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        if self.drop_database:
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.postgres_port), "-U", "postgres", "-d",
                            "postgres", "-c", f"DROP DATABASE IF EXISTS {self.drop_database} WITH (FORCE)"],
                           capture_output=True)

    def alive(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

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

    def trigger(self, dag_id: str, conf: dict) -> str:
        created = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return created["dag_run_id"]

    def clear_failed(self, dag_id: str, run_id: str) -> set[str]:
        cleared = self.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
                               {"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True})
        return {ti["task_id"] for ti in cleared["task_instances"]}

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        quoted = urllib.request.quote(run_id, safe="")
        instances = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in instances}


class PrivateServices:
    """A PostgreSQL cluster and a Redis server of the test's own, on free ports, so a test can restart
    them under a running stack without touching the machine's shared services. PostgreSQL refuses to
    run as root, so the cluster runs as the `postgres` OS user when the tests run as root."""

    def __init__(self):
        # Under /tmp itself: pytest's own temp folders are private to root, out of the postgres user's reach.
        self.root = Path(tempfile.mkdtemp(prefix="batchops-services-"))
        self.postgres_port, self.redis_port = free_port(), free_port()
        self.pgdata = self.root / "pgdata"
        self.redis: subprocess.Popen | None = None

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=True)

    @staticmethod
    def _pg_bin(name: str) -> str:
        found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        return str(found[-1]) if found else name

    def start(self) -> PrivateServices:
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._as_postgres(self._pg_bin("initdb"), "-D", str(self.pgdata), "-A", "trust", "-U", "postgres")
        self.start_postgres()
        self.start_redis()
        return self

    def start_postgres(self) -> None:
        self._as_postgres(self._pg_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.root / "postgres.log"),
                          "-o", f"-p {self.postgres_port} -k {self.root} -c listen_addresses=127.0.0.1", "-w", "start")

    def crash_postgres(self) -> None:
        """What a killed database container does: immediate shutdown, no checkpoint."""
        self._as_postgres(self._pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        AirflowStack.wait_for(lambda: port_open(self.redis_port), 30, "redis")

    def crash_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(timeout=30)

    def stop(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
        if self.pgdata.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._as_postgres(self._pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
