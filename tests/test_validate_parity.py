"""`python -m batchops validate` is the one gate: every broken config below fails validate with
`file: field: reason`, and the same broken file leaves every other provider's DAGs loaded in Airflow's
DagBag (no import error; the file shows as its own error DAG)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from batchops.settings import Settings

from conftest import REPO

GOOD_DAGS = {f"provider_{p}__{q}" for p in "abc" for q in ("propensity_model", "propensity_scoring")}


def provider_x(settings: Settings, edit=lambda text: text, name: str = "provider_x.yaml") -> Path:
    """A copy of provider_a as provider_x, with one edit."""
    text = (settings.config_dir / "provider_a.yaml").read_text().replace("provider_id: provider_a",
                                                                         "provider_id: provider_x")
    path = settings.config_dir / name
    path.write_text(edit(text))
    return path


def replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def add(line: str):
    return lambda text: text + line + "\n"


def break_pipeline_sql(settings: Settings) -> None:
    labels = settings.sql_dir / "labels.sql"
    text = labels.read_text()
    assert "SELECT DISTINCT customer_id" in text  # the statement this case breaks
    labels.write_text(text.replace("SELECT DISTINCT customer_id", "SELEC DISTINCT customer_id"))


CASES = {
    "a 120-character tag": (lambda s: provider_x(s, add(f"tags: [{'t' * 120}]")),
                            "provider_x.yaml: tags.0: String should have at most 100 characters"),
    "an invalid cron schedule": (lambda s: provider_x(s, add("schedule: '0 25 * * *'")),
                                 "provider_x.yaml: schedule: '0 25 * * *' is neither a cron expression"),
    "a misspelt schedule preset": (lambda s: provider_x(s, add("schedule: '@dayly'")),
                                   "provider_x.yaml: schedule: '@dayly' is neither"),
    "'__' in a provider id (DAG id collision)": (
        lambda s: provider_x(s, replace("provider_id: provider_x", "provider_id: provider_a__x")),
        "provider_x.yaml: provider_id: 'provider_a__x' must not contain '__'"),
    "'__' in a pipeline id (DAG id collision)": (
        lambda s: (s.pipelines_dir / "x__scoring.yaml").write_text(
            (s.pipelines_dir / "propensity_scoring.yaml").read_text().replace(
                "pipeline_id: propensity_scoring", "pipeline_id: x__scoring")),
        "x__scoring.yaml: pipeline_id: 'x__scoring' must not contain '__'"),
    "a broken *.yml provider file": (lambda s: provider_x(s, add("shedule: daily"), name="provider_x.yml"),
                                     "provider_x.yml: shedule: unknown key"),
    "a broken *.YAML provider file": (lambda s: provider_x(s, add("shedule: daily"), name="provider_x.YAML"),
                                      "provider_x.YAML: shedule: unknown key"),
    "an invalid date_format": (
        lambda s: provider_x(s, replace("    file: customers.csv\n", "    file: customers.csv\n    csv: {date_format: '%Y-%q'}\n")),
        "provider_x.yaml: entities.customers.csv.date_format: '%Y-%q' must contain a year"),
    "an entity named like an internal table": (
        lambda s: provider_x(s, replace("  customers:\n", "  labels:\n")),
        "provider_x.yaml: entities: entity name(s) ['labels'] are tables BatchOps keeps itself"),
    "a SQL file with a syntax error": (break_pipeline_sql, "propensity_model.yaml: features.sql.1: "),
    "an unknown pipeline": (lambda s: provider_x(s, add("pipelines: [propensity_model, churn_model]")),
                            "provider_x.yaml: pipelines.1: unknown pipeline 'churn_model'"),
    "an override with an invalid value": (
        lambda s: provider_x(s, add("pipelines:\n  propensity_model: {label: {horizon_days: 0}}")),
        "provider_x.yaml: pipelines.propensity_model.label.horizon_days: Input should be greater than or equal to 1"),
    "an override of a setting a provider may not change": (
        lambda s: provider_x(s, add("pipelines:\n  propensity_model: {stages: [plan]}")),
        "provider_x.yaml: pipelines.propensity_model.stages: unknown key: a provider may override only"),
    "an optional column mapped with another type": (
        lambda s: provider_x(s, replace("age:         {source: age, type: integer, min: 18, max: 110,",
                                        "age:         {source: age, type: string,")),
        "provider_x.yaml: entities.customers.columns.age.type: pipeline propensity_model reads age as integer"),
    "a required column not mapped": (
        lambda s: provider_x(s, replace("      amount:         {source: amount, type: float, required: true, min: 0, max: 100000}\n", "")),
        "provider_x.yaml: entities.transactions.columns: pipeline propensity_model needs canonical columns ['amount']"),
    "a misspelt key": (lambda s: provider_x(s, add("shedule: daily")), "provider_x.yaml: shedule: unknown key"),
    "a duplicate provider id": (
        lambda s: provider_x(s, replace("provider_id: provider_x", "provider_id: provider_b")),
        "provider_x.yaml: provider_id: 'provider_b' is also defined in"),
    "a primary key that is not a column": (
        lambda s: provider_x(s, replace("primary_key: [customer_id]", "primary_key: [client_id]")),
        "provider_x.yaml: entities.customers: primary_key names ['client_id']"),
}


def validate(settings: Settings) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchops", "--home", str(settings.home), "validate"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})


def dagbag_for(settings: Settings, monkeypatch) -> DagBag:
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("BATCHOPS_HOME", str(settings.home))
    return DagBag(str(REPO / "dags"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_refuses_and_other_providers_keep_their_dags(project, monkeypatch, case, bad_input):
    breaker, message = CASES[case]
    breaker(project)
    checked = validate(project)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert message in checked.stderr, checked.stderr
    bag = dagbag_for(project, monkeypatch)
    assert bag.import_errors == {}, bag.import_errors
    assert GOOD_DAGS - {"provider_b__propensity_model"} <= set(bag.dags) or case == "a SQL file with a syntax error"
    assert "provider_b__propensity_scoring" in bag.dags
    line = next(line for line in checked.stderr.splitlines() if message in line)
    bad_input.record("config", case, "validate exits 1: " + line.replace(str(project.home), "$BATCHOPS_HOME"),
                     kept="the other providers' DAGs load (DagBag: no import error)")


def test_files_whose_names_slug_alike_get_an_error_dag_each(project, monkeypatch):
    provider_x(project, add("shedule: daily"), name="provider-x.yaml")
    provider_x(project, add("shedule: daily"), name="provider_x.yaml")
    errors = [dag_id for dag_id in dagbag_for(project, monkeypatch).dags if dag_id.startswith("batchops_config_error__")]
    assert len(errors) == 2, errors


def test_a_valid_yml_provider_gets_its_dags(project, monkeypatch):
    provider_x(project, name="provider_x.yml")
    assert validate(project).returncode == 0
    assert {"provider_x__propensity_model", "provider_x__propensity_scoring"} <= set(dagbag_for(project, monkeypatch).dags)


def test_a_setting_that_is_not_a_number_is_named(project):
    checked = subprocess.run([sys.executable, "-m", "batchops", "--home", str(project.home), "validate"],
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "BATCHOPS_DUCKDB_THREADS": "two"})
    assert checked.returncode == 2
    assert "BATCHOPS_DUCKDB_THREADS='two' must be a whole number >= 1" in checked.stderr
    assert "Traceback" not in checked.stderr


def test_the_shipped_configs_pass(project):
    assert validate(project).returncode == 0
