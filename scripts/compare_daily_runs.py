"""Compare two `scripts/bench_daily.py` work folders day by day: every DAG run's predictions (customer_id, score,
snapshot_date) and the stored rows of the warehouse (without the columns naming the run or load). Used to show
that `--commands in-process` (Airflow's CLI code in one process) and `--commands subprocess` (`airflow dags
test` as a process a day) run the same thing:

    python scripts/bench_daily.py --days 8 --customers 2000 --commands subprocess --workdir /tmp/a --results /tmp/a
    python scripts/bench_daily.py --days 8 --customers 2000 --commands in-process --workdir /tmp/b --results /tmp/b
    python scripts/compare_daily_runs.py /tmp/a /tmp/b
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd

TABLES = {"transactions": "* EXCLUDE (load_id)", "customers": "* EXCLUDE (load_id)", "features": "*",
          "labels": "*", "predictions": "* EXCLUDE (run_id, model_id)"}


def runs(workdir: Path) -> tuple[Path, dict]:
    home = next(workdir.glob("batchops-year-*/home"))
    found = {}
    for plan in home.glob("runs/*/*/plan.json"):
        snapshot = json.loads(plan.read_text())["snapshot_date"]
        predictions = plan.parent / "predictions" / "predictions.parquet"
        found[(plan.parent.parent.name, snapshot)] = pd.read_parquet(predictions)[
            ["customer_id", "score", "snapshot_date"]].sort_values("customer_id").reset_index(drop=True)
    return home, found


def stored(home: Path) -> dict:
    with duckdb.connect(str(home / "warehouse" / "daily.duckdb"), read_only=True) as con:
        return {table: con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT {columns} FROM {table}) t").fetchone()
                for table, columns in TABLES.items()}


def main(first: str, second: str) -> int:
    home_a, runs_a = runs(Path(first))
    home_b, runs_b = runs(Path(second))
    if runs_a.keys() != runs_b.keys():
        print(f"different runs: {sorted(runs_a.keys() ^ runs_b.keys())}")
        return 1
    for key in sorted(runs_a):
        pd.testing.assert_frame_equal(runs_a[key], runs_b[key])
    tables_a, tables_b = stored(home_a), stored(home_b)
    differ = [table for table in TABLES if tables_a[table] != tables_b[table]]
    print(f"{len(runs_a)} runs with identical predictions; warehouse tables that differ: {differ or 'none'}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
