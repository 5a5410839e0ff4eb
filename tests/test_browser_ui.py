"""The Airflow UI in a real browser (Debian chromium through Playwright): log in, trigger a provider's
DAG with the snapshot_date date field, watch the run, and resume it by clearing the failed task with
the UI's own controls. Screenshots go to the test's output folder; BATCHOPS_UPDATE_DOCS=1 also copies
them to docs/ for the README."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from airflow_stack import ADMIN_PASSWORD, AirflowStack

from conftest import REPO, make_drop

pytestmark = pytest.mark.e2e
DAG_ID = "provider_a__propensity_model"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    deployment = AirflowStack(root, {"BATCHOPS_FAIL_ONCE": f"{DAG_ID}.score"})
    defaults = deployment.settings.config_dir / "_defaults.yaml"
    defaults.write_text(defaults.read_text().replace('schedule: "@daily"', "schedule: null"))  # only our run
    make_drop(deployment.settings, "provider_a", date(2026, 2, 1), customers=500)
    try:
        yield deployment.start()
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def page(stack):
    from playwright import sync_api as playwright_api
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install -y chromium (.ci/run does)"
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        yield context.new_page()
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def test_trigger_with_date_field_then_clear_the_failed_task_in_the_ui(stack, page, shots):
    stack.wait_for_dag(DAG_ID)
    page.goto(f"{stack.url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/$"), timeout=30_000)

    page.goto(f"{stack.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    snapshot_field = page.locator("#element_snapshot_date")
    assert snapshot_field.get_attribute("type") == "date"  # the Param's format: date gives a date picker
    snapshot_field.fill("2026-02-01")
    page.screenshot(path=str(shots / "trigger_form.png"))
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(rf".*/dags/{DAG_ID}/runs/.+"), timeout=30_000)
    run_id = page.url.split("/runs/")[1].split("/")[0].replace("%3A", ":").replace("%2B", "+")

    assert stack.wait_for_run(DAG_ID, run_id) == "failed", stack.logs()  # score fails once on purpose
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}/tasks/score")
    page.get_by_role("button", name="Press shift+c to clear").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Clear only failed tasks").click()
    page.screenshot(path=str(shots / "clear_failed_task.png"))
    dialog.get_by_role("button", name="Confirm").click()
    # The click returns before the server has cleared anything: wait for the clear to land first.
    stack.wait_for(lambda: stack.run_state(DAG_ID, run_id) != "failed", 60, "the cleared run to restart")
    assert stack.wait_for_run(DAG_ID, run_id) == "success", stack.logs()
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_text("Success").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "run_success.png"))
    assert stack.task_states(DAG_ID, run_id)["score"] == "success"
    if os.environ.get("BATCHOPS_UPDATE_DOCS") == "1":  # refresh the README's screenshots on request
        for name in ("trigger_form.png", "run_success.png"):
            shutil.copy(shots / name, REPO / "docs" / f"ui_{name}")


def no_horizontal_scroll(page) -> bool:
    """The BatchOps document inside Airflow's iframe is no wider than the iframe."""
    frame = next(f for f in page.frames if "/batchops/" in f.url)
    return frame.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")


def no_drop_run(stack, dag_id: str) -> None:
    """The run folder a scheduled run leaves when its drop never came (what summarize writes)."""
    from batchops.stages.summarize import run_outcome

    run_id = "scheduled__2026-02-05T00:00:00+00:00"
    folder = stack.settings.runs_dir / dag_id / "scheduled__2026-02-05T00_00_00_00_00"
    folder.mkdir(parents=True)
    outcome, why = run_outcome({"plan": "success", "wait_for_drop": "skipped", "ingest": "skipped"}, None, {},
                               [str(stack.settings.data_dir / "provider_b" / "2026-02-05" / "customers.csv")], 720)
    (folder / "plan.json").write_text(json.dumps({"run_id": run_id, "snapshot_date": "2026-02-05"}))
    (folder / "run_summary.md").write_text(f"# Run summary: {outcome}\n\n**{why}**\n")


def test_batchops_tab_and_page_show_the_run_in_the_ui(stack, page, shots):
    runs = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?state=success")["dag_runs"]
    assert runs, "the trigger test runs first and leaves a successful run"
    run_id = runs[0]["dag_run_id"]
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}")
    page.locator("a[href$='/plugin/batchops_run']").first.click()  # the run's BatchOps tab
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Data quality: PASSED").wait_for(timeout=30_000)
    assert frame.get_by_text("ROC-AUC").count() >= 1
    assert frame.locator("img[alt='roc_curve.png']").count() == 1
    # At a glance: the outcome, then the model card; the passing DQ checks collapsed, their count shown.
    assert frame.locator(".banner.complete").count() == 1 and frame.get_by_text("Model card").count() == 1
    passing = frame.locator("details.passing")
    assert passing.count() == 1 and passing.evaluate("element => element.open") is False
    assert re.search(r"\d+ passing checks", passing.locator("summary").inner_text())
    assert frame.locator("table.log").count() == 1  # logs.jsonl as a table
    page.set_viewport_size({"width": 1280, "height": 900})
    assert no_horizontal_scroll(page), "the run tab scrolls sideways at 1280 px"
    page.screenshot(path=str(shots / "batchops_run_tab.png"), full_page=True)
    quoted_run = run_id.replace(":", "%3A").replace("+", "%2B")
    links = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted_run}/taskInstances/score/links")
    assert f"/batchops/runs/{DAG_ID}/" in json.dumps(links)  # the extra link on the task points at the tab
    no_drop_run(stack, "provider_b__propensity_scoring")
    page.goto(f"{stack.url}/")
    page.get_by_role("link", name="BatchOps").first.click()  # the page in the navigation bar
    nav_frame = page.frame_locator("iframe").first
    for provider in ("provider_a", "provider_b", "provider_c"):
        nav_frame.get_by_role("link", name=provider, exact=True).wait_for(timeout=30_000)
    assert no_horizontal_scroll(page), "the BatchOps page scrolls sideways at 1280 px"
    page.goto(f"{stack.url}/batchops/?end=2026-02-07&days=7")  # the week of the runs
    page.locator("a.mark.nodrop").first.wait_for(timeout=30_000)  # the NO DROP state, in its own colour
    assert "NO DROP" in page.locator("a.mark.nodrop").first.get_attribute("title")
    assert page.locator(f"a.mark.complete[href*='{DAG_ID}']").count() == 1
    page.screenshot(path=str(shots / "batchops_page.png"), full_page=True)
    page.goto(f"{stack.url}/batchops/providers/provider_a")
    page.get_by_text("Champion history").first.wait_for(timeout=30_000)  # the model card of provider_a
    assert page.locator("svg.chart").count() >= 1  # the model history chart
    page.screenshot(path=str(shots / "batchops_provider.png"), full_page=True)
    if os.environ.get("BATCHOPS_UPDATE_DOCS") == "1":
        for name in ("batchops_run_tab.png", "batchops_page.png", "batchops_provider.png"):
            shutil.copy(shots / name, REPO / "docs" / f"ui_{name}")


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """An api-server only (the page needs no scheduler) over 1,000 provider configs and 30 days of their runs."""
    from datetime import UTC, datetime

    from many_providers import make_providers, make_run_folder

    root = tmp_path_factory.mktemp("thousand")
    deployment = AirflowStack(root)
    today = datetime.now(UTC).date()
    make_providers(root, 1000, today)
    index = json.loads((root / "runs" / "shop_0001__propensity_scoring" / ".calendar" / f"{today:%Y-%m}.json").read_text())
    day, entry = sorted(index.items())[-1]
    make_run_folder(root, "shop_0001__propensity_scoring", entry["run_id"], date.fromisoformat(day), entry["outcome"])
    try:
        yield deployment.start(components=("api-server",)), entry["run_id"]
    finally:
        deployment.stop()


def test_the_calendar_of_a_thousand_providers_in_the_browser(thousand, page, shots):
    stack, clicked_run = thousand
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{stack.url}/")
    if page.get_by_label("Username").count():
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/$"), timeout=30_000)
    timings = []
    for _ in range(3):  # the plugin validates the 1,000 configs when it loads; the page waits for nothing else
        answer = page.goto(f"{stack.url}/batchops/")
        assert answer.status == 200
        timings.append(float(answer.headers["server-timing"].split("dur=")[1]))
    print(f"1,000 providers, 30 days: server time {timings} ms")
    assert min(timings[1:]) <= 1000, timings
    rows = page.locator("table.calendar tr:has(td.provider)")
    assert rows.count() == 50 and page.locator("table.calendar th.day").count() == 30
    assert page.get_by_text("1000 providers; page 1 of 20").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"), \
        "the calendar scrolls sideways at 1280 px"
    page.screenshot(path=str(shots / "batchops_calendar.png"), full_page=False)
    page.locator("input[name=provider]").fill("shop_000")
    page.get_by_role("button", name="show").click()
    page.get_by_text("10 providers match").wait_for(timeout=30_000)
    assert all("shop_000" in name for name in page.locator("td.provider a").all_inner_texts())
    page.locator("a.mark[href*='shop_0001__propensity_scoring/']").last.click()  # a cell's link to its run tab
    page.wait_for_url(re.compile(r".*/batchops/runs/shop_0001__propensity_scoring/.+"), timeout=30_000)
    assert clicked_run.replace(":", "%3A").replace("+", "%2B") in page.url or clicked_run in page.url
    page.locator(".banner").get_by_text("made for the scale test").wait_for(timeout=30_000)
    if os.environ.get("BATCHOPS_UPDATE_DOCS") == "1":
        shutil.copy(shots / "batchops_calendar.png", REPO / "docs" / "ui_batchops_calendar.png")
