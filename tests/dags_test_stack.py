"""An isolated project with an embedded Airflow (SQLite metadata) in which `airflow dags test` runs whole DAGs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb

from batchops.settings import Settings

from conftest import REPO, VISIBLE_ON


class Stack:
    """An isolated project + embedded Airflow (SQLite) to run `airflow dags test` in."""

    def __init__(self, root: Path):
        for folder in ("configs", "pipelines", "sql"):
            shutil.copytree(REPO / "include" / folder, root / "include" / folder)
        defaults = root / "include" / "configs" / "_defaults.yaml"
        defaults.write_text(defaults.read_text().replace("retries: 1", "retries: 0"))  # fail fast in tests
        self.settings = Settings.from_env(default_home=root, env={})
        self.env = {**os.environ, "BATCHOPS_HOME": str(root), "AIRFLOW_HOME": str(root / "airflow_home"),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
        for variable in ("BATCHOPS_CONFIG_DIR", "BATCHOPS_PIPELINES_DIR", "BATCHOPS_RUNS_DIR", "BATCHOPS_DATA_DIR",
                         "BATCHOPS_WAREHOUSE_DIR", "BATCHOPS_FAIL_ONCE"):
            self.env.pop(variable, None)
        subprocess.run(["airflow", "db", "migrate"], env=self.env, check=True, capture_output=True)

    def dags_test(self, dag_id: str, snapshot: str, extra_env: dict | None = None) -> tuple[int, str, Path]:
        before = set(self.run_dirs(dag_id))
        done = subprocess.run(["airflow", "dags", "test", dag_id, snapshot, "--conf",
                               json.dumps({"snapshot_date": snapshot})],
                              env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=600)
        new = [d for d in self.run_dirs(dag_id) if d not in before]
        assert len(new) == 1, done.stdout[-3000:] + done.stderr[-3000:]
        return done.returncode, done.stdout + done.stderr, new[0]

    def run_dirs(self, dag_id: str) -> list[Path]:
        folder = self.settings.runs_dir / dag_id
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []

    def warehouse_rows(self, provider: str, table: str, snapshot: str) -> tuple[int, int]:
        with duckdb.connect(str(self.settings.warehouse_dir / f"{provider}.duckdb"), read_only=True) as con:
            key = {"customers": "customer_id", "transactions": "transaction_id", "predictions": "customer_id"}[table]
            seen = VISIBLE_ON if table in ("customers", "transactions") else "snapshot_date = CAST(? AS DATE)"
            return con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table} WHERE {seen}",
                               [snapshot]).fetchone()
