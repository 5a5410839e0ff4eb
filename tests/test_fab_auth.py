"""Production auth: Airflow's FAB auth manager, and a per-provider role (the provider config's access_roles,
created by `python -m batchops sync-roles`) that sees its provider's DAGs and BatchOps pages and gets 403 on
another provider's run tab and files. A native stack: api-server and DAG processor on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date

import pytest
import yaml

from airflow_stack import ADMIN_PASSWORD, AirflowStack, free_port
from many_providers import make_run_folder

from conftest import REPO

pytestmark = pytest.mark.e2e
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
ANALYST, ANALYST_PASSWORD = "ana", "analyst-password-123"


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    root = tmp_path_factory.mktemp("fab")
    port = free_port()
    stack = AirflowStack(root, airflow_env={
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": FAB, "AIRFLOW__API_AUTH__JWT_SECRET": "batchops-fab-test-jwt-secret-0123456789",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/"}, port=port)
    config = stack.settings.config_dir / "provider_a.yaml"
    data = yaml.safe_load(config.read_text())
    data["access_roles"] = ["provider_a_analysts"]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    stack.cli("db", "migrate")
    stack.cli("fab-db", "migrate")
    synced = subprocess.run([sys.executable, "-m", "batchops", "sync-roles"], env=stack.env, capture_output=True,
                            text=True, timeout=300)
    assert synced.returncode == 0, synced.stderr
    assert "created role provider_a_analysts (providers provider_a)" in synced.stdout
    stack.cli("users", "create", "--username", ANALYST, "--password", ANALYST_PASSWORD, "--role", "provider_a_analysts",
              "--email", f"{ANALYST}@example.com", "--firstname", ANALYST, "--lastname", "test")
    for dag_id in ("provider_a__propensity_model", "provider_b__propensity_model"):
        make_run_folder(root, dag_id, "manual__seen", date(2026, 2, 1))
    try:
        yield stack.start(components=("api-server", "dag-processor"))
    finally:
        stack.stop()


def call(stack, path: str, user: str, password: str) -> tuple[int, str]:
    token_request = urllib.request.Request(f"{stack.url}/auth/token", json.dumps(
        {"username": user, "password": password}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(token_request, timeout=30) as answer:
        token = json.load(answer)["access_token"]
    request = urllib.request.Request(f"{stack.url}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_provider_role_sees_only_its_provider(fab):
    stack = fab

    def analyst_dags():
        status, body = call(stack, "/api/v2/dags?limit=100", ANALYST, ANALYST_PASSWORD)
        dag_ids = {d["dag_id"] for d in json.loads(body)["dags"]} if status == 200 else set()
        return dag_ids if {"provider_a__propensity_model", "provider_a__propensity_scoring"} <= dag_ids else None

    # the DAG processor syncs each DAG's access_control into FAB as it parses it
    visible = stack.wait_for(analyst_dags, 240, "the analyst's DAGs", interval=3)
    assert visible == {"provider_a__propensity_model", "provider_a__propensity_scoring"}
    status, page = call(stack, "/batchops/?end=2026-02-05", ANALYST, ANALYST_PASSWORD)
    assert status == 200 and ">provider_a</a>" in page and "provider_b" not in page and "provider_c" not in page
    assert "1 provider;" in page
    own = call(stack, "/batchops/runs/provider_a__propensity_model/manual__seen", ANALYST, ANALYST_PASSWORD)
    assert own[0] == 200 and "made for the scale test" in own[1]
    assert call(stack, "/batchops/providers/provider_a", ANALYST, ANALYST_PASSWORD)[0] == 200
    for path in ("/batchops/runs/provider_b__propensity_model/manual__seen",
                 "/batchops/files/provider_b__propensity_model/manual__seen/run_summary.md",
                 "/batchops/providers/provider_b", "/api/v2/dags/provider_b__propensity_model"):
        assert call(stack, path, ANALYST, ANALYST_PASSWORD)[0] == 403, path
    status, page = call(stack, "/batchops/?end=2026-02-05", "admin", ADMIN_PASSWORD)
    assert status == 200 and all(f">{p}</a>" in page for p in ("provider_a", "provider_b", "provider_c"))
    assert call(stack, "/batchops/runs/provider_b__propensity_model/manual__seen", "admin", ADMIN_PASSWORD)[0] == 200


def test_sync_roles_says_when_no_provider_names_a_role(tmp_path):
    from batchops.access import access_control

    assert access_control([]) is None
    assert access_control(["r"]) == {"r": {"DAGs": {"can_read", "can_edit"},
                                           "DAG Runs": {"can_read", "can_create"}}}
    assert (REPO / "src" / "batchops" / "access.py").exists()
