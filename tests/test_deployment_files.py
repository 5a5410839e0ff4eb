"""Dockerfile and docker-compose.yaml, proven without a Docker engine: parsed and checked against what
BatchOps needs, accepted by `docker-compose config`, and lint-clean under hadolint."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

TOOLS = REPO / ".venv-tools" / "bin"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}
MOUNTS = {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include", "/opt/airflow/data",
          "/opt/airflow/runs", "/opt/airflow/warehouse"}
SECRET_SETTINGS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} missing: run scripts/setup_tools.sh (scripts/test.sh does)"
    return str(path)


def test_standard_airflow_topology_with_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "airflow-worker-b"} | AIRFLOW_SERVICES
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init", "airflow-worker"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, name
    for name in AIRFLOW_SERVICES - {"airflow-init"} | {"airflow-worker-b"}:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_celery_executor_and_batchops_folders_are_mounted(compose):
    common = compose["x-airflow-common"]
    environment = common["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "@postgres:5432" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@redis:6379" in environment["AIRFLOW__CELERY__BROKER_URL"]
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert {mount.split(":")[1] for mount in common["volumes"]} >= MOUNTS
    assert common["user"].startswith("${AIRFLOW_UID")
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert compose["services"][name]["volumes"] == common["volumes"], name


def test_every_secret_comes_from_the_env_file(compose):
    environment = compose["x-airflow-common"]["environment"]
    for setting in SECRET_SETTINGS:
        value = environment[setting]
        assert "${" in value, setting
        assert not re.search(r"://[^:$]+:[^@$]+@", value), f"{setting} has a literal credential"
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text()
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True).stdout
    assert tracked.strip() == ""
    example = (REPO / ".env.example").read_text()
    for variable in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
                     "AIRFLOW_ADMIN_PASSWORD"):
        assert re.search(rf"^{variable}=change-me", example, re.MULTILINE), variable


def test_init_refuses_the_example_secrets(compose):
    script = compose["services"]["airflow-init"]["command"][1].replace("$$", "$")
    env = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    done = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
    assert done.returncode == 1
    assert "POSTGRES_PASSWORD in .env still has its example value" in done.stderr


def test_compose_runs_the_fab_auth_manager_and_creates_its_users_and_roles(compose):
    """Production auth: FAB, not the SimpleAuthManager; airflow-init migrates FAB's tables, creates the admin from
    .env and the providers' roles (what AirflowStack.start does natively for tests/test_celery_stack.py)."""
    environment = compose["x-airflow-common"]["environment"]
    assert environment["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert not any("SIMPLE_AUTH_MANAGER" in key for key in environment)
    script = compose["services"]["airflow-init"]["command"][1]
    steps = ["airflow db migrate", "airflow fab-db migrate", "airflow users create --username \"$$AIRFLOW_ADMIN_USER\"",
             "python -m batchops sync-roles"]
    assert all(step in script for step in steps) and [script.index(step) for step in steps] == sorted(
        script.index(step) for step in steps)
    assert "apache-airflow-providers-fab==" in (REPO / "requirements.txt").read_text()


def test_docker_compose_accepts_the_file(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text((REPO / ".env.example").read_text())
    done = subprocess.run([tool("docker-compose"), "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yaml"),
                           "config", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env_file.write_text("AIRFLOW_UID=50000\n")  # no secrets at all
    done = subprocess.run([tool("docker-compose"), "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yaml"),
                           "config", "--quiet"], capture_output=True, text=True)
    assert done.returncode != 0 and "set POSTGRES_USER in .env" in done.stderr


def test_dockerfile_is_lint_clean_and_matches_the_pins():
    done = subprocess.run([tool("hadolint"), "--config", str(REPO / ".hadolint.yaml"), str(REPO / "Dockerfile")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert f"FROM apache/airflow:{pinned}-python3.11" in dockerfile
    assert "tesseract-ocr" in dockerfile and "poppler-utils" in dockerfile
    assert "-c constraints.txt" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users[-1] not in ("0", "root")  # runs unprivileged
    assert not re.search(r"(?i)(password|secret|fernet)\s*=", dockerfile)


def test_dockerfile_paths_exist():
    for line in Path(REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for source in line.split()[2:-1]:
                assert (REPO / source).exists(), source


def test_image_runs_unprivileged_and_bakes_in_no_secret():
    dockerfile = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users[-1] == "50000", users  # the airflow user of the base image, never root at run time
    baked = re.findall(r"^(?:ENV|ARG)\s+(.*)$", dockerfile, re.MULTILINE)
    assert not [line for line in baked if re.search(r"SECRET|PASSWORD|FERNET|TOKEN|KEY", line, re.IGNORECASE)], baked
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", "data", "runs", "warehouse", ".venv"} <= set(ignored)


SECRET_PATTERNS = {
    "Fernet key": re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "credential in a URL": re.compile(r"://[A-Za-z0-9_.-]+:(?!\$\{)[^@\s/:]{4,}@"),
    "secret assignment": re.compile(r"(?i)(secret|password|fernet_key|token)[A-Za-z_]*[\"']?\s*[:=]\s*[\"']?(?!\$|change-me|\{|<|/)"
                                    r"[A-Za-z0-9+/_-]{16,}"),
}


def test_no_credential_is_committed():
    """Every tracked file outside tests/ (whose throwaway stacks use obvious test values) is clean."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    findings = []
    for name in tracked:
        path = REPO / name
        if name.startswith("tests/") or not path.is_file() or path.suffix in (".png", ".pdf", ".pkl", ".parquet"):
            continue
        text = path.read_text(errors="ignore")
        findings += [f"{name}: {label}" for label, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert findings == []


def test_workers_warn_on_oversubscription_then_consume_their_queues(compose):
    """The default worker consumes `default`; the second one (profile scale) its shard, with its own
    warehouse volume and every other folder shared."""
    services = compose["services"]
    for name, queue in (("airflow-worker", "default"), ("airflow-worker-b", "shard_b")):
        shell, flag, script = services[name]["command"]
        assert (shell, flag) == ("bash", "-c")
        script = script.replace("$$", "$")
        assert script.startswith("python -m batchops check-worker; exec airflow celery worker --queues ")
        environment = {**compose["x-airflow-common"]["environment"], **services[name].get("environment", {})}
        queues = {k: str(v) for k, v in environment.items() if k == "BATCHOPS_WORKER_QUEUES"}
        done = subprocess.run(["bash", "-c", script.split("; ")[1].replace("exec airflow", "echo")],
                              env={"PATH": "/usr/bin:/bin", **queues}, capture_output=True, text=True)
        assert done.stdout.strip() == f"celery worker --queues {queue}", (name, done.stdout, done.stderr)
    second = services["airflow-worker-b"]
    assert second["profiles"] == ["scale"]
    common = compose["x-airflow-common"]["volumes"]
    own = [mount for mount in second["volumes"] if mount not in common]
    assert own == ["warehouse-b:/opt/airflow/warehouse"]
    assert {m.split(":")[1] for m in second["volumes"]} == {m.split(":")[1] for m in common}
    assert "warehouse-b" in compose["volumes"]
