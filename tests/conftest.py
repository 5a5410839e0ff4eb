"""Shared fixtures: an isolated project (configs, pipelines, SQL copied to tmp) and data drops."""

from __future__ import annotations

import os
import re
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
# The rows of an entity table that a run of the drop given as the ? parameter reads (batchops.storage.versions).
VISIBLE_ON = "CAST(? AS DATE) BETWEEN valid_from AND coalesce(valid_to - 1, DATE '9999-12-31')"
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
    files = generate_data.generate(provider, snapshot, customers, seed, settings.data_dir, defect, history_days)
    for path in files.values():
        delivered_earlier(path)
    return files


def delivered_earlier(path: Path) -> Path:
    """Backdate a landing file: ingest watches files modified within landing_settle_seconds for growth."""
    generate_data.landed_earlier([path])
    return path


def run_context(settings: Settings, provider_id: str = "provider_a", pipeline_id: str = "propensity_model",
                snapshot: date = SNAPSHOT, run_id: str = "manual__test") -> RunContext:
    config_set = configs(settings)
    return RunContext(f"{provider_id}__{pipeline_id}", run_id, config_set.providers[provider_id],
                      config_set.pipeline_for(provider_id, pipeline_id), snapshot, settings)


# ---------------------------------------------------------------- bad-input catalogue
# Tests of a bad input take the `bad_input` fixture (and so carry the `bad_input` marker) and record what
# BatchOps answered. With BATCHOPS_BAD_INPUTS_DOC=PATH, a run of the whole suite writes every case and its
# outcome to PATH: scripts/test.sh (and so CI) writes build/bad_inputs.md; the committed docs/bad_inputs.md is
# refreshed on request with `BATCHOPS_BAD_INPUTS_DOC=docs/bad_inputs.md bash scripts/test.sh`. A plain
# `pytest` writes nothing. (Only the whole suite: several modules' cases build on the tests before them.
# An environment variable, not a pytest option: tests/conftest.py is not loaded before options are parsed.)
_bad_input_rows: dict[tuple[str, str], dict] = {}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker: `pytest -m bad_input` runs the cases
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "bad_input" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bad_input)


class BadInputCase:
    def __init__(self, nodeid: str):
        self.nodeid = nodeid

    def record(self, category: str, case: str, outcome: object, *, kept: str = "earlier data unchanged",
               home: Path | None = None) -> None:
        """category: config/data/conf/model/output/OCR/security; outcome: the error or verdict observed."""
        text = " ".join(str(outcome).split())
        if home is not None:
            text = text.replace(str(home), "$BATCHOPS_HOME")
        text = re.sub(r"/tmp/[^\s'\"]*?/(data|runs|warehouse|include)/", r"$BATCHOPS_HOME/\1/", text)
        _bad_input_rows[(self.nodeid, case)] = {"category": category, "case": case, "outcome": text, "kept": kept}


@pytest.fixture
def bad_input(request) -> BadInputCase:
    return BadInputCase(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        for (nodeid, _), row in _bad_input_rows.items():
            if nodeid == item.nodeid:
                row["result"] = "pass" if report.passed else "FAIL"


def _whole_suite_ran(config) -> bool:
    tests_dir = REPO / "tests"
    args = [Path(a.split("::")[0]).resolve() for a in config.args] or [Path.cwd().resolve()]
    return (not config.option.keyword and not config.option.markexpr
            and all(a in (tests_dir, REPO) for a in args))


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("BATCHOPS_BAD_INPUTS_DOC")
    if not target or not _bad_input_rows or not _whole_suite_ran(session.config):
        return
    rows = sorted(_bad_input_rows.values(), key=lambda r: (CATEGORY_ORDER.index(r["category"]), r["case"]))
    lines = ["# Bad inputs and faults tried, and what BatchOps does with them", "",
             "Written by the test suite (`BATCHOPS_BAD_INPUTS_DOC=docs/bad_inputs.md bash scripts/test.sh`; every CI run "
             "writes build/bad_inputs.md): every row is a test that feeds the input (or causes the fault) and checks "
             "the outcome below, that nothing stored earlier changed or got lost, and that the other providers are "
             "unaffected.",
             "", f"{len(rows)} cases, {sum(r.get('result') == 'pass' for r in rows)} passing.", "",
             "| # | category | case | what BatchOps does (message as observed) | earlier data | test |",
             "|---|---|---|---|---|---|"]
    for number, row in enumerate(rows, 1):
        outcome = row["outcome"] if len(row["outcome"]) <= 400 else row["outcome"][:397] + "..."
        cells = [str(number), row["category"], row["case"], outcome.replace("|", "\\|"), row["kept"],
                 row.get("result", "not run")]
        lines.append("| " + " | ".join(cells) + " |")
    path = Path(target) if Path(target).is_absolute() else REPO / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


CATEGORY_ORDER = ["config", "data", "conf", "model", "output", "OCR", "security", "faults"]
