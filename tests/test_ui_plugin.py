"""The BatchOps plugin inside Airflow's own API app: registered, auth-guarded, traversal-proof, and showing
a finished run's artifacts and a blocked run's reason."""

from __future__ import annotations

import html
import json
import os
import stat
import subprocess
import sys
from datetime import date

import pytest

from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.plan import write_plan
from batchops.stages.score import score
from batchops.stages.summarize import summarize
from batchops.stages.train import train
from batchops.stages.validate import validate

from conftest import REPO, make_drop, run_context

PASSWORD = "plugin-test-password"
DAG_ID = "provider_a__propensity_model"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """Airflow's api app (with plugins) on a migrated SQLite DB, and two finished runs on disk."""
    from batchops.settings import Settings

    home = tmp_path_factory.mktemp("ui")
    import shutil

    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, home / "include" / folder)
    airflow_home = os.environ["AIRFLOW_HOME"]
    (home / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    env = {"AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "BATCHOPS_HOME": str(home),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API_AUTH__JWT_SECRET": "plugin-test-jwt-secret-0123456789"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    subprocess.run(["airflow", "db", "migrate"], env={**os.environ, "AIRFLOW_HOME": airflow_home}, check=True,
                   capture_output=True)
    settings = Settings.from_env()
    make_drop(settings, "provider_a", date(2026, 2, 1), customers=400)
    ctx = run_context(settings, run_id="manual__ok")
    write_plan(ctx, "conf.snapshot_date", {})
    for stage in (ingest, validate, load, build_features, train, score):
        stage(ctx)
    summarize(ctx, {t: "success" for t in ctx.pipeline.stages if t != "summarize"})
    make_drop(settings, "provider_a", date(2026, 2, 2), customers=300, defect="duplicate_keys")
    blocked = run_context(settings, snapshot=date(2026, 2, 2), run_id="manual__blocked")
    write_plan(blocked, "conf.snapshot_date", {})
    ingest(blocked)
    validate(blocked)
    summarize(blocked, {"plan": "success", "ingest": "success", "validate": "success", "dq_gate": "success",
                        "load": "skipped", "score": "skipped"})
    from airflow import plugins_manager
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    for cached in vars(plugins_manager).values():  # plugins are cached per process; load ours afresh
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()

    try:
        with TestClient(create_app()) as test_client:
            yield test_client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def token(client) -> dict[str, str]:
    answer = client.post("/auth/token", json={"username": "admin", "password": PASSWORD})
    assert answer.status_code in (200, 201), answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_plugin_is_registered_with_its_views(client):
    plugins = client.get("/api/v2/plugins", headers=token(client)).json()["plugins"]
    batchops = next(p for p in plugins if p["name"] == "batchops")
    assert {v["destination"] for v in batchops["external_views"]} == {"dag_run", "nav"}
    assert batchops["global_operator_extra_links"]


def test_a_task_process_loads_the_plugin_without_building_the_pages_app(tmp_path):
    """Every task process loads the plugins (for their macros); the pages' app, with Airflow's security and
    ORM modules it imports and the config warm-up thread it starts, is built only where it is served."""
    probe = ("import sys\n"
             "from airflow.sdk.plugins_manager import integrate_macros_plugins\n"
             "integrate_macros_plugins()\n"
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('batchops'))))\n")
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    loaded = done.stdout.split()
    assert done.returncode == 0 and "batchops_plugin" in loaded, done.stderr[-2000:]
    assert not [m for m in loaded if m.startswith("batchops.ui")], loaded


def test_anonymous_requests_are_refused(client):
    assert client.get(f"/batchops/runs/{DAG_ID}/manual__ok").status_code == 401
    assert client.get("/batchops/").status_code == 401
    assert client.get(f"/batchops/files/{DAG_ID}/manual__ok/roc_curve.png").status_code == 401


def test_finished_run_shows_dq_metrics_plots_and_predictions(client):
    page = client.get(f"/batchops/runs/{DAG_ID}/manual__ok", headers=token(client))
    assert page.status_code == 200, page.text
    for text in ("COMPLETE", "Data quality: PASSED", "ROC-AUC", "approved", "roc_curve.png", "Predictions (first 50)",
                 "snapshot_date <b>2026-02-01</b>", "Log (last 20 events)"):
        assert text in page.text, text
    image = client.get(f"/batchops/files/{DAG_ID}/manual__ok/roc_curve.png", headers=token(client))
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    assert client.get(f"/batchops/files/{DAG_ID}/manual__ok/predictions/predictions.csv",
                      headers=token(client)).text.startswith("customer_id,score")


def test_blocked_run_says_why_at_the_top(client):
    page = client.get(f"/batchops/runs/{DAG_ID}/manual__blocked", headers=token(client)).text
    assert 'class="banner blocked"' in page and "unique_key" in page
    assert page.index("BLOCKED") < page.index("Data quality: FAILED")


@pytest.mark.parametrize("path", [
    f"/batchops/files/{DAG_ID}/manual__ok/../../../include/configs/provider_a.yaml",
    f"/batchops/files/{DAG_ID}/manual__ok/model/model.pkl",
    f"/batchops/files/{DAG_ID}/..%2F..%2Fetc/passwd",
    "/batchops/runs/..%2F..%2Fetc/manual__ok",
])
def test_traversal_and_non_artifacts_are_refused(client, path):
    assert client.get(path, headers=token(client)).status_code in (400, 404)


def test_unknown_run_is_404_and_other_dags_get_a_short_message(client):
    assert client.get(f"/batchops/runs/{DAG_ID}/nope", headers=token(client)).status_code == 404
    other = client.get("/batchops/runs/some_other_dag/run1", headers=token(client))
    assert other.status_code == 200 and "not a BatchOps DAG" in other.text


def test_the_calendar_shows_each_provider_day_linking_to_its_run(client):
    page = client.get("/batchops/?end=2026-02-05&days=7", headers=token(client))
    assert page.status_code == 200 and "app;dur=" in page.headers["server-timing"]
    text = page.text
    for provider in ("provider_a", "provider_b", "provider_c"):
        assert f'href="/batchops/providers/{provider}">{provider}</a>' in text
    assert 'class="mark complete" href="/batchops/runs/provider_a__propensity_model/manual__ok"' in text
    assert 'class="mark blocked" href="/batchops/runs/provider_a__propensity_model/manual__blocked"' in text
    assert "provider_a · propensity_model · 2026-02-02: BLOCKED: data quality failed" in text
    assert "snapshot dates 2026-01-30 to 2026-02-05" in text
    filtered = client.get("/batchops/?end=2026-02-05&days=7&outcome=blocked", headers=token(client)).text
    assert "1 provider match" in filtered and ">provider_b<" not in filtered
    by_name = client.get("/batchops/?provider=_c", headers=token(client)).text
    assert ">provider_c</a>" in by_name and ">provider_a</a>" not in by_name
    odd = client.get("/batchops/?days=500&end=someday&outcome=maybe", headers=token(client))
    notes = html.unescape(odd.text)
    assert odd.status_code == 200 and "days='500' is not a whole number from 1 to 92" in notes
    assert "end='someday' is not a date" in notes and "outcome='maybe' is not one of" in notes


def test_a_provider_page_lists_its_dags_runs_by_snapshot_and_approved_model(client):
    page = client.get("/batchops/providers/provider_a", headers=token(client)).text
    for dag_id in ("provider_a__propensity_model", "provider_a__propensity_scoring"):
        assert dag_id in page
    assert 'title="run manual__blocked">2026-02-02</a>' in page  # the latest run, by its snapshot date
    assert 'title="run manual__ok">2026-02-01</a>' in page  # the earlier one
    assert "provider_a__propensity_model__20260201__" in page and "trained on 2026-02-01" in page
    assert "next scheduled run" in page and "Model history" in page and "<svg" in page
    assert "none approved yet" in client.get("/batchops/providers/provider_b", headers=token(client)).text
    assert client.get("/batchops/providers/nobody", headers=token(client)).status_code == 404


def test_a_broken_config_is_listed_on_the_page(client):
    from batchops.settings import Settings

    broken = Settings.from_env().config_dir / "provider_z.yaml"
    broken.write_text("provider_id: provider_z\nshedule: daily\n")
    try:
        page = client.get("/batchops/", headers=token(client)).text
    finally:
        broken.unlink()
    assert "provider_z.yaml: " in page and "shedule: unknown key" in page


def test_a_user_without_access_to_the_dag_cannot_read_its_artifacts(client, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    original = SimpleAuthManager.is_authorized_dag

    def deny_provider_a(self, *, method, user, access_entity=None, details=None):
        if details is not None and details.id == DAG_ID:
            return False
        return original(self, method=method, user=user, access_entity=access_entity, details=details)

    monkeypatch.setattr(SimpleAuthManager, "is_authorized_dag", deny_provider_a)
    headers = token(client)
    assert client.get(f"/batchops/runs/{DAG_ID}/manual__ok", headers=headers).status_code == 403
    assert client.get(f"/batchops/files/{DAG_ID}/manual__ok/roc_curve.png", headers=headers).status_code == 403
    assert client.get("/batchops/runs/provider_b__propensity_model/x", headers=headers).status_code == 404


# ---------------------------------------------------------------- hostile run folders
SECRET_MARK = "root:x:0:0"  # what /etc/passwd would show


@pytest.fixture
def hostile_run(client, tmp_path):
    """A run folder whose artifacts are links, a FIFO and oversize files, next to a real plan.json."""
    from batchops.artifacts import run_dir_for
    from batchops.settings import Settings

    settings = Settings.from_env()
    folder = run_dir_for(settings.runs_dir, DAG_ID, "manual__hostile")
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps({"run_id": "manual__hostile", "snapshot_date": "2026-02-01",
                                                  "snapshot_date_source": "conf", "stages": [], "files": {}}))
    outside = tmp_path / "outside"
    (outside / "predictions").mkdir(parents=True)
    (outside / "passwd").write_text(f"{SECRET_MARK}:root:/root:/bin/bash\n")
    (outside / "predictions" / "predictions.csv").write_text(f"customer_id,score\n{SECRET_MARK},0.5\n")
    (outside / "metrics.json").write_text(json.dumps({"model_id": SECRET_MARK}))
    (folder / "run_summary.md").symlink_to(outside / "passwd")
    (folder / "predictions").symlink_to(outside / "predictions")
    os.link(outside / "metrics.json", folder / "metrics.json")
    os.mkfifo(folder / "dq_report.json")
    (folder / "roc_curve.png").symlink_to(outside / "passwd")
    (folder / "dq_report.md").write_bytes(b"x" * (3 << 20))
    os.mknod(folder / "score_histogram.png", stat.S_IFSOCK | 0o644)  # a socket: open() fails with ENXIO
    yield folder
    import shutil

    shutil.rmtree(folder)


def test_run_tab_never_follows_links_hard_links_or_fifos(client, hostile_run, bad_input):
    import time

    started = time.monotonic()
    page = client.get(f"/batchops/runs/{DAG_ID}/manual__hostile", headers=token(client))
    assert page.status_code == 200 and time.monotonic() - started < 10  # the FIFO did not block the request
    assert SECRET_MARK not in page.text
    for refusal in ("run_summary.md: is a symbolic link", "predictions is a symbolic link",
                    "metrics.json: has 2 hard links", "dq_report.json: is not a regular file",
                    "score_histogram.png: cannot be opened as a file"):
        assert refusal in page.text, refusal
    assert "roc_curve.png" not in page.text.split("<h3>Plots</h3>")[-1] or "<h3>Plots</h3>" not in page.text
    bad_input.record("security", "run folder artifacts that are symlinks, hard links, FIFOs, sockets (run tab)",
                     "page renders with a note per artifact, no outside content: "
                     + "; ".join(line for line in page.text.split("<p class=\"refused\">")[1:4]).replace("</p>", ""),
                     kept="nothing outside the run folder read")


@pytest.mark.parametrize("name", ["run_summary.md", "predictions/predictions.csv", "metrics.json", "dq_report.json",
                                  "roc_curve.png", "score_histogram.png"])
def test_download_route_refuses_links_hard_links_and_fifos(client, hostile_run, name):
    answer = client.get(f"/batchops/files/{DAG_ID}/manual__hostile/{name}", headers=token(client))
    assert answer.status_code == 404 and SECRET_MARK not in answer.text


def test_oversize_artifacts_are_not_rendered_but_downloadable(client, hostile_run):
    (hostile_run / "run_summary.md").unlink()
    (hostile_run / "run_summary.md").write_bytes(b"# Run summary: COMPLETE\n" + b"y" * (3 << 20))
    page = client.get(f"/batchops/runs/{DAG_ID}/manual__hostile", headers=token(client))
    assert page.status_code == 200 and "run_summary.md: is 3,145,752 bytes" in page.text
    assert len(page.content) < 200_000
    download = client.get(f"/batchops/files/{DAG_ID}/manual__hostile/dq_report.md", headers=token(client))
    assert download.status_code == 200 and len(download.content) == 3 << 20
    with (hostile_run / "plan.json").open("r+b") as plan:  # sparse: 3 GiB without using the disk
        plan.truncate(3 << 30)
    too_big = client.get(f"/batchops/files/{DAG_ID}/manual__hostile/plan.json", headers=token(client))
    assert too_big.status_code == 404 and "over the limit of 2,147,483,648 bytes" in too_big.text


def test_overview_survives_hostile_run_folders(client, hostile_run, tmp_path):
    elsewhere = tmp_path / "elsewhere_run"
    elsewhere.mkdir()
    (elsewhere / "plan.json").write_text(json.dumps({"run_id": "run_outside_runs", "snapshot_date": SECRET_MARK}))
    linked = hostile_run.parent / "manual__linked"
    linked.symlink_to(elsewhere, target_is_directory=True)
    try:
        page = client.get("/batchops/providers/provider_a", headers=token(client))
        run_tab = client.get(f"/batchops/runs/{DAG_ID}/manual__linked", headers=token(client))
    finally:
        linked.unlink()
    assert page.status_code == 200 and SECRET_MARK not in page.text and "run_outside_runs" not in page.text
    assert run_tab.status_code in (400, 404) and SECRET_MARK not in run_tab.text


def test_a_300_mb_log_is_read_from_its_tail(client, hostile_run, bad_input):
    import time
    import tracemalloc

    log = hostile_run / "logs.jsonl"
    with log.open("wb") as handle:  # sparse: 300 MB of NULs (a torn, unparsable line), then real events
        handle.truncate(300 << 20)
        handle.seek(0, 2)
        for number in range(30):
            handle.write((json.dumps({"stage": "score", "event": f"tail_event_{number}"}) + "\n").encode())
    started = time.monotonic()
    page = client.get(f"/batchops/runs/{DAG_ID}/manual__hostile", headers=token(client))
    seconds = time.monotonic() - started
    tracemalloc.start()  # Python allocations of one more request (what reading the whole log would show)
    client.get(f"/batchops/runs/{DAG_ID}/manual__hostile", headers=token(client))
    grown_mib = tracemalloc.get_traced_memory()[1] / (1 << 20)
    tracemalloc.stop()
    assert page.status_code == 200 and "tail_event_29" in page.text and "tail_event_9" not in page.text
    assert seconds < 2 and grown_mib < 20, (seconds, grown_mib)
    print(f"300 MB log: {seconds:.3f} s, {grown_mib:.2f} MiB")
    overview = client.get("/batchops/", headers=token(client))
    assert overview.status_code == 200
    bad_input.record("output", "300 MB logs.jsonl in a run folder (run tab, overview)",
                     f"run tab read the last 256 KB only: {seconds:.2f} s, peak Python allocations {grown_mib:.1f} MiB; "
                     "the last 20 events shown", kept="log untouched")


def test_a_damaged_warehouse_breaks_only_its_own_cells(client, bad_input):
    from batchops.settings import Settings
    from batchops.storage.warehouse import warehouse_path

    settings = Settings.from_env()
    damaged = warehouse_path(settings, "provider_b")
    damaged.parent.mkdir(parents=True, exist_ok=True)
    original = damaged.read_bytes() if damaged.exists() else None
    outcomes = {}
    try:
        for case, payload in (("truncated", (warehouse_path(settings, "provider_a").read_bytes()[:20000])),
                              ("random bytes", os.urandom(300_000))):
            damaged.write_bytes(payload)
            assert client.get("/batchops/", headers=token(client)).status_code == 200  # the calendar reads no warehouse
            page = client.get("/batchops/providers/provider_b", headers=token(client))
            assert page.status_code == 200, page.text
            row = page.text.split("provider_b__propensity_model</td>")[1].split("</tr>")[0]
            assert "warehouse file damaged" in row and "python -m batchops rebuild --provider provider_b" in row
            other = client.get("/batchops/providers/provider_a", headers=token(client)).text
            assert "provider_a__propensity_model__20260201__" in other  # provider_a unaffected
            outcomes[case] = row.split("warehouse file damaged: ")[1].split("</td>")[0]
    finally:
        if original is None:
            damaged.unlink()
        else:
            damaged.write_bytes(original)
    bad_input.record("security", "damaged warehouse (truncated, random bytes) on the BatchOps page",
                     "provider_b's cells: warehouse file damaged: " + outcomes["truncated"].replace("&#34;", '"'),
                     kept="other providers' rows unchanged")


def test_pages_forbid_loading_anything_from_elsewhere(client):
    for url in ("/batchops/", f"/batchops/runs/{DAG_ID}/manual__ok", f"/batchops/files/{DAG_ID}/manual__ok/metrics.json",
                "/batchops/runs/some_dag/x"):
        answer = client.get(url, headers=token(client))
        policy = answer.headers.get("content-security-policy", "")
        assert answer.status_code == 200, url
        assert "default-src 'none'" in policy and "img-src 'self'" in policy and "script-src" not in policy, url


def test_a_linked_dag_or_run_folder_serves_nothing_under_its_name(client):
    from batchops.settings import Settings

    runs = Settings.from_env().runs_dir
    linked_dag = runs / "provider_b__propensity_model"
    linked_run = runs / DAG_ID / "manual__alias"
    linked_dag.symlink_to(runs / DAG_ID, target_is_directory=True)
    linked_run.symlink_to(runs / DAG_ID / "manual__ok", target_is_directory=True)
    try:
        answers = [client.get(url, headers=token(client)) for url in (
            "/batchops/runs/provider_b__propensity_model/manual__ok",
            "/batchops/files/provider_b__propensity_model/manual__ok/metrics.json",
            f"/batchops/runs/{DAG_ID}/manual__alias", f"/batchops/files/{DAG_ID}/manual__alias/metrics.json")]
        overview = client.get("/batchops/providers/provider_b", headers=token(client)).text
        calendar = client.get("/batchops/?end=2026-02-05&provider=provider_b", headers=token(client)).text
    finally:
        linked_dag.unlink()
        linked_run.unlink()
    assert [answer.status_code for answer in answers] == [404, 404, 404, 404]
    row = overview.split("provider_b__propensity_model", 1)[1].split("</tr>", 1)[0]
    assert "manual__ok" not in row and "manual__ok" not in calendar
