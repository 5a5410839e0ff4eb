"""The load matrix of the reliability tests, shared by the LocalExecutor and CeleryExecutor stacks:
4 providers x 2 snapshots triggered at once, plus one snapshot triggered twice; then every run must
succeed with exact, duplicate-free rows and no DuckDB lock error anywhere."""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime

import duckdb

from airflow_stack import AirflowStack
from batchops.artifacts import run_dir_for
from batchops.runlog import read_events

from conftest import VISIBLE_ON, configs, make_drop

PROVIDERS = ("provider_a", "provider_b", "provider_c", "provider_d")
SNAPSHOTS = (date(2026, 2, 1), date(2026, 2, 8))
TWICE = ("provider_a", date(2026, 2, 1))  # triggered a second time, at the same moment
PIPELINE = "propensity_model"
CUSTOMERS = 200
LOCK_ERRORS = re.compile(r"Could not set lock|Conflicting lock|waited \d+s for the warehouse lock")


def add_provider_like(stack: AirflowStack, new_id: str, like: str) -> None:
    """A provider made from a shipped one's YAML: a new provider is only a new file."""
    source = (stack.settings.config_dir / f"{like}.yaml").read_text()
    (stack.settings.config_dir / f"{new_id}.yaml").write_text(source.replace(f"provider_id: {like}",
                                                                            f"provider_id: {new_id}"))


def prepare(stack: AirflowStack) -> None:
    """Before the stack starts: no schedules (unpausing must not start runs of its own), a fourth
    provider, and the drops."""
    defaults = stack.settings.config_dir / "_defaults.yaml"
    defaults.write_text(defaults.read_text().replace('schedule: "@daily"', "schedule: null"))
    add_provider_like(stack, "provider_d", "provider_b")
    for provider in PROVIDERS:
        for number, snapshot in enumerate(SNAPSHOTS):
            make_drop(stack.settings, provider, snapshot, customers=CUSTOMERS, seed=11 + number)


def trigger_all(stack: AirflowStack) -> list[tuple[str, str, date]]:
    """Every run of the matrix, triggered back to back (the scheduler sees them together)."""
    dag_ids = {f"{provider}__{PIPELINE}" for provider in PROVIDERS}
    for dag_id in dag_ids:
        stack.wait_for_dag(dag_id)
        stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    wanted = [(provider, snapshot) for provider in PROVIDERS for snapshot in SNAPSHOTS] + [TWICE]
    return [(f"{provider}__{PIPELINE}", stack.trigger(f"{provider}__{PIPELINE}", {"snapshot_date": str(snapshot)}),
             snapshot) for provider, snapshot in wanted]


def wait_all(stack: AirflowStack, runs: list[tuple[str, str, date]], timeout: float = 1500) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {run_id: stack.run_state(dag_id, run_id) for dag_id, run_id, _ in runs}
        if all(state in ("success", "failed") for state in states.values()):
            return states
        time.sleep(3)
    raise AssertionError(f"runs not finished after {timeout}s: {states}\n{stack.logs()}")


def expected_rows(stack: AirflowStack, provider: str, snapshot: date, dag_id: str, run_id: str) -> dict[str, int]:
    """Rows delivered: data lines of each CSV; for a scanned PDF, the rows its OCR produced."""
    spec = configs(stack.settings).providers[provider]
    folder = spec.landing_dir(stack.settings.data_dir, snapshot)
    counts = {}
    for entity in ("customers", "transactions"):
        csv_file = folder / spec.entities[entity].file
        if spec.entities[entity].format == "pdf":
            csv_file = run_dir_for(stack.settings.runs_dir, dag_id, run_id) / "ocr" / f"{entity}.csv"
        with csv_file.open("rb") as handle:
            counts[entity] = sum(1 for _ in handle) - 1
    return counts


def warehouse_facts(stack: AirflowStack, provider: str, snapshot: date) -> dict[str, tuple]:
    with duckdb.connect(str(stack.settings.warehouse_dir / f"{provider}.duckdb"), read_only=True) as con:
        def one(sql: str) -> tuple:
            return con.execute(sql, [snapshot]).fetchone()

        return {
            "customers": one(f"SELECT count(*), count(DISTINCT customer_id) FROM customers WHERE {VISIBLE_ON}"),
            "transactions": one(f"SELECT count(*), count(DISTINCT transaction_id) FROM transactions "
                                f"WHERE {VISIBLE_ON}"),
            "features": one("SELECT count(*), count(DISTINCT (customer_id, snapshot_date, purpose)), "
                            "count(DISTINCT snapshot_date), count(*) FILTER (WHERE purpose = 'score') "
                            "FROM features WHERE source_snapshot = ?"),
            "predictions": one("SELECT count(*), count(DISTINCT customer_id) FROM predictions WHERE snapshot_date = ?"),
        }


def lock_errors(stack: AirflowStack) -> list[str]:
    found = []
    for path in [*stack.root.rglob("*.log"), *stack.settings.runs_dir.rglob("logs.jsonl")]:
        text = path.read_text(errors="replace")
        found += [f"{path}: {match.group(0)}" for match in LOCK_ERRORS.finditer(text)]
    return found


def most_tasks_at_once(stack: AirflowStack) -> int:
    """Largest number of BatchOps task attempts running at the same moment, from every logs.jsonl."""
    edges = []
    for path in stack.settings.runs_dir.rglob("logs.jsonl"):
        for event in read_events(path):
            if event.get("event") in ("stage_started", "stage_finished", "stage_failed"):
                moment = datetime.fromisoformat(event["ts"]).timestamp()
                edges.append((moment, 1 if event["event"] == "stage_started" else -1))
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak


def run_and_check(stack: AirflowStack) -> dict:
    """Trigger the matrix, wait, assert everything the issue asks; return the figures."""
    started = time.monotonic()
    runs = trigger_all(stack)
    states = wait_all(stack, runs)
    seconds = round(time.monotonic() - started, 1)
    assert all(state == "success" for state in states.values()), (states, stack.logs())
    for dag_id, run_id, snapshot in runs:
        provider = dag_id.split("__")[0]
        expected = expected_rows(stack, provider, snapshot, dag_id, run_id)
        facts = warehouse_facts(stack, provider, snapshot)
        customers = expected["customers"]
        assert facts["customers"] == (customers, customers), (dag_id, snapshot, facts)
        assert facts["transactions"] == (expected["transactions"],) * 2, (dag_id, snapshot, facts, expected)
        rows, distinct, as_of_dates, scored = facts["features"]
        # every customer at the snapshot; at the two training dates, those who had signed up by then
        assert rows == distinct and as_of_dates == 3 and scored == customers, (dag_id, snapshot, facts)
        assert facts["predictions"] == (customers, customers), (dag_id, snapshot, facts)
    errors = lock_errors(stack)
    assert errors == [], errors
    figures = {"runs": len(runs), "providers": len(PROVIDERS), "snapshots": len(SNAPSHOTS),
               "same_snapshot_twice": f"{TWICE[0]} {TWICE[1]}", "seconds": seconds,
               "most_tasks_at_once": most_tasks_at_once(stack), "lock_errors": len(errors),
               "duplicate_rows": 0}
    (stack.root / "load_matrix.json").write_text(json.dumps(figures, indent=2))
    print("load matrix:", figures)
    return figures

