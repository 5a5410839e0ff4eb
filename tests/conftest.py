"""Shared fixtures: an isolated project (configs, pipelines, SQL copied to tmp) and data drops."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

import pytest

from batchops.config import ConfigSet, load_config_set
from batchops.runcontext import RunContext
from batchops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# Airflow reads these at import: keep the test session away from ~/airflow and the example DAGs.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="batchops-airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# Airflow caches its plugins per process: point it at ours before any test loads them.
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
SNAPSHOT = date(2026, 2, 1)
sys.path.insert(0, str(REPO / "scripts"))  # generate_data is a script, imported here as a module

import generate_data  # noqa: E402


@pytest.fixture
def project(tmp_path: Path) -> Settings:
    """A copy of include/ with empty data, runs and warehouse folders."""
    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, tmp_path / "include" / folder)
    return Settings.from_env(default_home=tmp_path, env={})


def configs(settings: Settings) -> ConfigSet:
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    assert not config_set.issues, config_set.issues
    return config_set


def make_drop(settings: Settings, provider_id: str = "provider_a", snapshot: date = SNAPSHOT,
              customers: int = 600, seed: int = 3, defect: str | None = None) -> dict[str, Path]:
    provider = configs(settings).providers[provider_id]
    scanned = any(entity.format == "pdf" for entity in provider.entities.values())
    history_days = 90 if scanned else generate_data.HISTORY_DAYS  # keep scanned statements a few dozen pages
    return generate_data.generate(provider, snapshot, customers, seed, settings.data_dir, defect, history_days)


def run_context(settings: Settings, provider_id: str = "provider_a", pipeline_id: str = "propensity_model",
                snapshot: date = SNAPSHOT, run_id: str = "manual__test") -> RunContext:
    config_set = configs(settings)
    return RunContext(f"{provider_id}__{pipeline_id}", run_id, config_set.providers[provider_id],
                      config_set.pipelines[pipeline_id], snapshot, settings)
