"""Where things live: resolved once from the environment at the edge, then passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Folders and engine limits of one deployment."""

    home: Path
    config_dir: Path
    pipelines_dir: Path
    sql_dir: Path
    runs_dir: Path
    warehouse_dir: Path
    data_dir: Path
    duckdb_memory_limit: str | None = None
    duckdb_threads: int | None = None
    warehouse_lock_timeout_seconds: float = 1800.0
    run_log_max_bytes: int = 16 << 20
    backup_retention: int = 7
    # build_features aggregates at most this many customers per GROUP BY (docs/performance.md)
    feature_partition_customers: int = 1_000_000

    @classmethod
    def from_env(cls, default_home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Read BATCHOPS_* variables; relative paths are relative to BATCHOPS_HOME."""
        env = os.environ if env is None else env
        home = Path(env.get("BATCHOPS_HOME") or default_home or Path.cwd()).resolve()

        def folder(variable: str, default: str) -> Path:
            return (home / env.get(variable, default)).resolve()

        return cls(
            home=home,
            config_dir=folder("BATCHOPS_CONFIG_DIR", "include/configs"),
            pipelines_dir=folder("BATCHOPS_PIPELINES_DIR", "include/pipelines"),
            sql_dir=folder("BATCHOPS_SQL_DIR", "include/sql"),
            runs_dir=folder("BATCHOPS_RUNS_DIR", "runs"),
            warehouse_dir=folder("BATCHOPS_WAREHOUSE_DIR", "warehouse"),
            data_dir=folder("BATCHOPS_DATA_DIR", "data"),
            duckdb_memory_limit=env.get("BATCHOPS_DUCKDB_MEMORY_LIMIT") or None,
            duckdb_threads=_number(env, "BATCHOPS_DUCKDB_THREADS", None, int, minimum=1),
            warehouse_lock_timeout_seconds=_number(env, "BATCHOPS_WAREHOUSE_LOCK_TIMEOUT", 1800.0, float, minimum=0),
            run_log_max_bytes=_number(env, "BATCHOPS_RUN_LOG_MAX_BYTES", 16 << 20, int, minimum=4096),
            backup_retention=_number(env, "BATCHOPS_BACKUP_RETENTION", 7, int, minimum=1),
            feature_partition_customers=_number(env, "BATCHOPS_FEATURE_PARTITION_CUSTOMERS", 1_000_000, int,
                                                minimum=1),
        )

    def model_store(self, provider_id: str) -> Path:
        return self.warehouse_dir / "models" / provider_id

    def backup_dir(self, provider_id: str) -> Path:
        return self.warehouse_dir / "backups" / provider_id


def _number(env: Mapping[str, str], variable: str, default, kind, minimum):
    """A numeric setting; a value that is not a number stops with the variable's name, not a traceback."""
    raw = env.get(variable)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"environment variable {variable}={raw!r} must be a {'whole ' if kind is int else ''}"
                         f"number >= {minimum}; fix or unset it")
    return value


def oversubscription(worker_slots: int, duckdb_threads: int | None, cores: int) -> str | None:
    """Why a worker's slots would fight over its cores, or None: each slot may run a DuckDB query with
    `duckdb_threads` threads (DuckDB's default, unset, is one per core), so slots x threads must not
    exceed the cores."""
    threads = duckdb_threads or cores
    if worker_slots * threads <= cores:
        return None
    fixes = [f"AIRFLOW__CELERY__WORKER_CONCURRENCY={max(1, cores // threads)}"]
    if cores // worker_slots >= 1:
        fixes.append(f"BATCHOPS_DUCKDB_THREADS={cores // worker_slots}")
    return (f"worker concurrency {worker_slots} x DuckDB threads {threads}"
            f"{' (BATCHOPS_DUCKDB_THREADS unset: one per core)' if duckdb_threads is None else ''} = "
            f"{worker_slots * threads} > {cores} cores: concurrent tasks will slow each other down. Set "
            + " or ".join(fixes))
