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

    @classmethod
    def from_env(cls, default_home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Read BATCHOPS_* variables; relative paths are relative to BATCHOPS_HOME."""
        env = os.environ if env is None else env
        home = Path(env.get("BATCHOPS_HOME") or default_home or Path.cwd()).resolve()

        def folder(variable: str, default: str) -> Path:
            return (home / env.get(variable, default)).resolve()

        threads = env.get("BATCHOPS_DUCKDB_THREADS")
        return cls(
            home=home,
            config_dir=folder("BATCHOPS_CONFIG_DIR", "include/configs"),
            pipelines_dir=folder("BATCHOPS_PIPELINES_DIR", "include/pipelines"),
            sql_dir=folder("BATCHOPS_SQL_DIR", "include/sql"),
            runs_dir=folder("BATCHOPS_RUNS_DIR", "runs"),
            warehouse_dir=folder("BATCHOPS_WAREHOUSE_DIR", "warehouse"),
            data_dir=folder("BATCHOPS_DATA_DIR", "data"),
            duckdb_memory_limit=env.get("BATCHOPS_DUCKDB_MEMORY_LIMIT") or None,
            duckdb_threads=int(threads) if threads else None,
            warehouse_lock_timeout_seconds=float(env.get("BATCHOPS_WAREHOUSE_LOCK_TIMEOUT", "1800")),
        )

    def model_store(self, provider_id: str) -> Path:
        return self.warehouse_dir / "models" / provider_id
