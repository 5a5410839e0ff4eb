"""Onboarding: a new provider is one YAML file. Built from scratch in a temp config folder and run end to
end with `airflow dags test`, with no change to code, pipelines or SQL:

(a) a transactions-only purchase log from the late 1990s: no customer file, ids with leading zeros, dates
    written %Y%m%d, a quantity column nobody asked for, no transaction id, and a 90-day horizon override;
(b) a provider that maps every optional column.

The data here is made by this file, not by scripts/generate_data.py."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from batchops.config import load_config_set

from conftest import VISIBLE_ON, delivered_earlier
from dags_test_stack import Stack

pytestmark = pytest.mark.e2e

ALL_NUMERIC = ["age", "tenure_days", "recency_days", "has_history", "txn_count_30", "txn_count_90", "txn_count_365",
               "amount_sum_30", "amount_sum_90", "amount_sum_365", "avg_amount_365", "txn_trend_90",
               "txn_count_all", "amount_sum_all", "avg_amount_all"]

PURCHASE_LOG_PROVIDER = """\
provider_id: cd_retailer
description: CD retailer purchase log 1997-1998 (transactions only, no customer file)
start_date: 1997-01-01
pipelines:
  propensity_model:
    label: {horizon_days: 90}
  propensity_scoring: {}
entities:
  transactions:
    file: purchases.csv
    csv: {date_format: "%Y%m%d"}
    columns:
      customer_id: {source: customer, type: string, required: true, max_missing: 0.0}
      txn_date:    {source: date, type: date, required: true, max_missing: 0.0}
      quantity:    {source: quantity, type: integer, min: 0}
      amount:      {source: dollars, type: float, min: 0, max_missing: 0.0}
"""

FULL_PROVIDER = """\
provider_id: full_mapper
description: every optional column mapped, own column names and layout
entities:
  customers:
    file: members.csv
    csv: {delimiter: "|", date_format: "%d.%m.%Y"}
    primary_key: [customer_id]
    columns:
      customer_id: {source: member_no, type: string, required: true, max_missing: 0.0}
      signup_date: {source: joined, type: date}
      region:      {source: area, type: string}
      segment:     {source: tier, type: string}
      age:         {source: years, type: integer, min: 0, max: 120, max_missing: 0.1}
  transactions:
    file: orders.csv
    csv: {delimiter: "|", date_format: "%d.%m.%Y"}
    primary_key: [transaction_id]
    columns:
      transaction_id: {source: order_no, type: string, required: true, max_missing: 0.0}
      customer_id:    {source: member_no, type: string, required: true, max_missing: 0.0}
      txn_date:       {source: ordered, type: date, required: true}
      amount:         {source: total, type: float, min: 0}
"""


def purchase_log(folder: Path, snapshot: date, customers: int = 1500, seed: int = 5) -> list[str]:
    """A CDNOW-like log: a first-purchase cohort in early 1997, repeat buying that fades at varying speed.
    Returns the customer ids that appear before the snapshot."""
    rng = np.random.default_rng(seed)
    rows, seen = [], []
    for number in range(1, customers + 1):
        customer = f"{number:05d}"
        day = date(1997, 1, 1) + timedelta(days=int(rng.integers(0, 90)))
        rate, lifetime = rng.gamma(0.7, 0.02), rng.exponential(300)
        last_day = day + timedelta(days=int(lifetime))
        while day < snapshot and day <= last_day:
            quantity = int(rng.integers(1, 4))
            rows.append((customer, day.strftime("%Y%m%d"), quantity, round(float(rng.lognormal(2.6, 0.5)) * quantity, 2)))
            day += timedelta(days=max(1, int(rng.exponential(1 / max(rate, 1e-3)))))
        if rows and rows[-1][0] == customer:
            seen.append(customer)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "purchases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "date", "quantity", "dollars"])
        writer.writerows(sorted(rows, key=lambda row: row[1]))
    delivered_earlier(folder / "purchases.csv")
    return seen


def full_drop(folder: Path, snapshot: date, customers: int = 900, seed: int = 11) -> None:
    """Members with region, tier and age, where tier and recency drive future orders."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    members, orders = [], []
    for number in range(customers):
        member = f"M-{number:04d}"
        joined = snapshot - timedelta(days=int(rng.integers(30, 900)))
        tier = str(rng.choice(["gold", "silver", "bronze"]))
        members.append((member, joined.strftime("%d.%m.%Y"), str(rng.choice(["alps", "coast", "plains"])), tier,
                        "" if rng.random() < 0.03 else int(rng.integers(18, 90))))
        rate = {"gold": 0.08, "silver": 0.04, "bronze": 0.015}[tier] * rng.gamma(1.0, 1.0)
        stop = snapshot - timedelta(days=int(rng.integers(0, 400))) if rng.random() < 0.5 else snapshot
        day = joined
        while True:
            day += timedelta(days=max(1, int(rng.exponential(1 / rate))))
            if day >= stop:
                break
            orders.append((f"O{len(orders):07d}", member, day.strftime("%d.%m.%Y"), round(float(rng.lognormal(3, 0.6)), 2)))
    for name, header, rows in (("members.csv", ["member_no", "joined", "area", "tier", "years"], members),
                               ("orders.csv", ["order_no", "member_no", "ordered", "total"], orders)):
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="|")
            writer.writerow(header)
            writer.writerows(rows)
        delivered_earlier(folder / name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    return Stack(tmp_path_factory.mktemp("onboarding"))


def run_dag(stack: Stack, dag_id: str, snapshot: str) -> Path:
    code, output, run_dir = stack.dags_test(dag_id, snapshot)
    assert code == 0, output[-5000:]
    summary = (run_dir / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: COMPLETE"), summary[:2000]
    return run_dir


def test_transactions_only_provider_from_the_1990s_onboards_with_one_file(stack, bad_input):
    (stack.settings.config_dir / "cd_retailer.yaml").write_text(PURCHASE_LOG_PROVIDER)
    config_set = load_config_set(stack.settings.config_dir, stack.settings.pipelines_dir, stack.settings.sql_dir)
    assert not config_set.issues, config_set.issues
    training_ids = purchase_log(stack.settings.data_dir / "cd_retailer" / "1998-06-30", date(1998, 6, 30))

    run_dir = run_dag(stack, "cd_retailer__propensity_model", "1998-06-30")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["snapshot_date"] == "1998-06-30"
    assert plan["effective_config"]["pipeline"]["label"]["horizon_days"] == 90  # the provider's override, DAG id unchanged
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["label"]["horizon_days"] == 90
    assert metrics["features"] == [f for f in ALL_NUMERIC if f != "age"]  # tenure from the first purchase
    assert set(metrics["features_absent"]) == {"age", "region", "segment"}
    summary = (run_dir / "run_summary.md").read_text()
    assert "optional features left out (3): age" in summary and "label horizon 90 days" in summary

    scoring_ids = purchase_log(stack.settings.data_dir / "cd_retailer" / "1998-09-30", date(1998, 9, 30))
    scoring_dir = run_dag(stack, "cd_retailer__propensity_scoring", "1998-09-30")
    scoring_plan = json.loads((scoring_dir / "plan.json").read_text())
    assert scoring_plan["effective_config"]["pipeline"]["label"]["horizon_days"] == 90  # the model's horizon, not 30
    with (scoring_dir / "predictions" / "predictions.csv").open() as handle:
        scored = [row["customer_id"] for row in csv.DictReader(handle)]
    assert sorted(scored) == sorted(scoring_ids) and scored[0].startswith("0")  # ids exact, zeros kept
    with duckdb.connect(str(stack.settings.warehouse_dir / "cd_retailer.duckdb"), read_only=True) as con:
        stored = {row[0] for row in con.execute(
            f"SELECT customer_id FROM customers WHERE {VISIBLE_ON}", ["1998-06-30"]).fetchall()}
    assert stored == set(training_ids)
    bad_input.record("config", "a transactions-only provider from 1997-98 (no customer file, %Y%m%d dates, "
                     "leading-zero ids, 90-day horizon override)",
                     f"both pipelines COMPLETE; model ROC-AUC {metrics['roc_auc']:.3f} on "
                     f"{len(metrics['features'])} features, left out: {sorted(metrics['features_absent'])}; "
                     f"{len(scored)} customers scored with their ids exact", kept="no code, pipeline or SQL change")


def test_a_provider_with_every_optional_column_uses_every_feature(stack):
    (stack.settings.config_dir / "full_mapper.yaml").write_text(FULL_PROVIDER)
    full_drop(stack.settings.data_dir / "full_mapper" / "2026-03-31", date(2026, 3, 31))
    run_dir = run_dag(stack, "full_mapper__propensity_model", "2026-03-31")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["features"] == ALL_NUMERIC + ["region", "segment"] and metrics["features_absent"] == {}
    assert "optional features left out (0): none" in (run_dir / "run_summary.md").read_text()
    assert metrics["label"]["horizon_days"] == 30  # no override: the pipeline's own
    full_drop(stack.settings.data_dir / "full_mapper" / "2026-04-30", date(2026, 4, 30), seed=12)
    scoring_dir = run_dag(stack, "full_mapper__propensity_scoring", "2026-04-30")
    with (scoring_dir / "predictions" / "predictions.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 900


def test_a_run_whose_plan_fails_still_leaves_a_failed_summary(stack, bad_input):
    import subprocess

    (stack.settings.config_dir / "cd_retailer.yaml").write_text(PURCHASE_LOG_PROVIDER)  # (also when run alone)
    before = set(stack.run_dirs("cd_retailer__propensity_scoring"))
    done = subprocess.run(["airflow", "dags", "test", "cd_retailer__propensity_scoring", "1998-10-01", "--conf",
                           json.dumps({"snapshot_data": "1998-10-01"})], env=stack.env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode != 0
    new = [d for d in stack.run_dirs("cd_retailer__propensity_scoring") if d not in before]
    assert len(new) == 1, done.stdout[-3000:]
    summary = (new[0] / "run_summary.md").read_text()
    assert summary.startswith("# Run summary: FAILED") and "'snapshot_data' (did you mean 'snapshot_date'?)" in summary
    bad_input.record("conf", "a run whose plan fails (conf key typo), through `airflow dags test`",
                     summary.split("**")[1], kept="a run folder with a FAILED run_summary.md; nothing else written")
