"""Config schema: the shipped files are valid; every broken file is reported with file, field and reason
and never hides the other providers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchops.cli import main as cli_main
from batchops.config import deep_merge, load_config_set
from batchops.settings import Settings

from conftest import REPO, configs

SHIPPED_PROVIDERS = ("provider_a", "provider_b", "provider_c")


def load(settings: Settings):
    return load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def provider_yaml(provider_id: str = "provider_x", extra: str = "", column_extra: str = "") -> str:
    return f"""\
provider_id: {provider_id}
{extra}
entities:
  customers:
    file: customers.csv
    primary_key: [customer_id]
    columns:
      customer_id: {{source: id, type: string, required: true}}
      signup_date: {{source: joined, type: date}}
      region: {{source: region, type: string}}
      segment: {{source: segment, type: string}}
      age: {{source: age, type: integer}}
      {column_extra}
  transactions:
    file: tx.csv
    primary_key: [transaction_id]
    columns:
      transaction_id: {{source: tid, type: string}}
      customer_id: {{source: id, type: string}}
      txn_date: {{source: day, type: date}}
      amount: {{source: value, type: float}}
"""


def test_shipped_configs_are_valid_and_pair_up(project):
    config_set = load(project)
    assert config_set.issues == []
    assert sorted(f"{p.provider_id}__{q.pipeline_id}" for p, q in config_set.dag_pairs()) == [
        f"{provider}__{pipeline}" for provider in SHIPPED_PROVIDERS
        for pipeline in ("propensity_model", "propensity_scoring")]


def test_defaults_merge_under_provider_and_provider_wins(project):
    config_set = load(project)
    a, b = config_set.providers["provider_a"], config_set.providers["provider_b"]
    assert a.owner == "batchops" and a.schedule == "@daily"  # from _defaults.yaml
    assert a.dq.max_missing == 0.05 and b.dq.max_missing == 0.02  # provider_b overrides one key
    assert b.dq.max_invalid == 0.0  # ...and keeps the other defaults of the same mapping


def test_provider_b_really_differs_from_provider_a(project):
    config_set = load(project)
    a, b = config_set.providers["provider_a"], config_set.providers["provider_b"]
    assert a.entities["transactions"].csv.delimiter != b.entities["transactions"].csv.delimiter
    assert a.entities["transactions"].csv.date_format != b.entities["transactions"].csv.date_format
    assert a.entities["customers"].columns["customer_id"].source != b.entities["customers"].columns["customer_id"].source
    assert a.missing_threshold("customers", "region") != b.missing_threshold("customers", "region")


def test_deep_merge_replaces_lists_and_merges_mappings():
    merged = deep_merge({"dq": {"a": 1, "b": 2}, "pipelines": ["x", "y"]}, {"dq": {"b": 3}, "pipelines": ["z"]})
    assert merged == {"dq": {"a": 1, "b": 3}, "pipelines": ["z"]}


BROKEN_PROVIDERS = {
    "yaml_syntax": ("provider_id: [unclosed\n", "(yaml)", "line"),
    "python_tag": ("provider_id: !!python/object:os.system x\n", "(yaml)", "custom YAML tags"),
    "alias_bomb": ('a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "(yaml)", "aliases"),
    "duplicate_key": (provider_yaml() + "provider_id: again\n", "(yaml)", "duplicate key 'provider_id'"),
    "norway_boolean": (provider_yaml(extra="pipelines: [no]"), "pipelines.0", "'no'"),
    "unknown_key": (provider_yaml(extra="shedule: '@daily'"), "shedule", "unknown key"),
    "missing_entities": ("provider_id: provider_x\n", "entities", "required key is missing"),
    "uppercase_id": (provider_yaml("Provider_X"), "provider_id", "must match"),
    "path_in_id": (provider_yaml("../evil"), "provider_id", "must match"),
    "column_mapped_twice": (provider_yaml(column_extra="other: {source: age, type: integer}"),
                            "entities.customers", "mapped twice"),
    "unknown_type": (provider_yaml(column_extra="other: {source: o, type: decimal}"),
                     "entities.customers.columns.other.type", "Input should be"),
    "threshold_above_one": (provider_yaml(column_extra="other: {source: o, type: string, max_missing: 1.5}"),
                            "entities.customers.columns.other.max_missing", "less than or equal to 1"),
    "unknown_pipeline": (provider_yaml(extra="pipelines: [churn_model]"), "pipelines.0", "unknown pipeline"),
    "landing_outside_data": (provider_yaml(extra="landing_path: '../{snapshot_date}'"), "landing_path", "inside"),
    "queue_not_a_queue_name": (provider_yaml(extra="queue: Shard A"), "queue", "must match"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PROVIDERS))
def test_broken_provider_file_is_reported_and_others_still_load(project, case, bad_input):
    text, field, reason = BROKEN_PROVIDERS[case]
    broken = write(project.config_dir / "provider_x.yaml", text)
    config_set = load(project)
    issues = config_set.broken_files[str(broken)]
    assert any(field in issue.field and reason in issue.reason for issue in issues), issues
    assert set(config_set.providers) == set(SHIPPED_PROVIDERS)  # the others are untouched
    bad_input.record("config", f"provider file: {case.replace('_', ' ')}", issues[0], home=project.home,
                     kept="other providers load; error DAG shows it")


@pytest.mark.parametrize("copy_name", ["a_copy.yaml", "zz_copy.yaml"])
def test_two_files_with_the_same_provider_id_are_both_refused_naming_each_other(project, copy_name, bad_input):
    original = project.config_dir / "provider_a.yaml"
    copy = write(project.config_dir / copy_name, original.read_text())
    config_set = load(project)
    assert "provider_a" not in config_set.providers  # sorting first no longer takes the provider over
    for file, other in ((copy, original), (original, copy)):
        reason = config_set.broken_files[str(file)][0].reason
        assert "also defined in" in reason and str(other) in reason and "neither file is used" in reason
    assert set(config_set.providers) == set(SHIPPED_PROVIDERS) - {"provider_a"}
    bad_input.record("config", f"two files with the same provider id ({copy_name} sorts "
                     f"{'before' if copy_name < 'provider_a.yaml' else 'after'} the original)",
                     config_set.broken_files[str(copy)][0], home=project.home,
                     kept="the other providers load; provider_a's DAGs show the error until one file goes")


def test_provider_missing_a_column_the_pipeline_needs_is_refused(project, bad_input):
    path = write(project.config_dir / "provider_x.yaml", provider_yaml().replace(
        "      amount: {source: value, type: float}\n", ""))
    issues = load(project).broken_files[str(path)]
    assert any("needs canonical columns ['amount']" in i.reason for i in issues)
    bad_input.record("config", "provider lacks a column its pipeline needs", issues[0], home=project.home,
                     kept="other providers load")


BROKEN_PIPELINES = {
    "unknown_stage": ("stages: [plan, ingest, magic]", "stages.2", "Input should be"),
    "stage_out_of_order": ("stages: [plan, load, ingest]", "(top level)", "needs ['dq_gate']"),
    "missing_sql_file": ("stages: [plan, ingest, validate, dq_gate, load, build_features]\n"
                         "features: {sql: [nope.sql], columns: [age]}", "features.sql.0", "does not exist"),
    "sql_outside_sql_dir": ("stages: [plan, ingest, validate, dq_gate, load, build_features]\n"
                            "features: {sql: [../configs/x.sql], columns: [age]}", "features.sql.0", "inside"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PIPELINES))
def test_broken_pipeline_file_is_reported(project, case, bad_input):
    body, field, reason = BROKEN_PIPELINES[case]
    path = write(project.pipelines_dir / "broken.yaml", f"pipeline_id: broken\n{body}\n")
    config_set = load(project)
    issue = config_set.broken_files[str(path)][0]
    assert field in issue.field and reason in issue.reason, issue
    assert set(config_set.pipelines) == {"propensity_model", "propensity_scoring"}
    bad_input.record("config", f"pipeline file: {case.replace('_', ' ')}", issue, home=project.home,
                     kept="other pipelines load")


def test_validate_command_exit_codes(project, monkeypatch, capsys):
    monkeypatch.setenv("BATCHOPS_HOME", str(project.home))
    assert cli_main(["validate"]) == 0
    assert f"{2 * len(SHIPPED_PROVIDERS) + 1} DAG(s)" in capsys.readouterr().out  # and batchops_maintenance
    write(project.config_dir / "provider_x.yaml", provider_yaml(extra="shedule: daily"))
    assert cli_main(["validate"]) == 1
    assert "provider_x.yaml: shedule: unknown key" in capsys.readouterr().err


def test_repository_configs_validate_from_the_command_line(monkeypatch):
    monkeypatch.setenv("BATCHOPS_HOME", str(REPO))
    for variable in ("BATCHOPS_CONFIG_DIR", "BATCHOPS_PIPELINES_DIR", "BATCHOPS_SQL_DIR"):
        monkeypatch.delenv(variable, raising=False)
    assert cli_main(["validate"]) == 0


def test_scheduled_runs_start_at_the_providers_start_date_and_manual_runs_take_any_date(project):
    from datetime import date

    from batchops.errors import RunParameterError
    from batchops.runcontext import parse_snapshot_date
    from batchops.stages.plan import check_scheduled_start

    provider = configs(project).providers["provider_a"]  # start_date 2026-01-01
    check_scheduled_start(provider, "manual", date(1997, 3, 1))
    check_scheduled_start(provider, "backfill", date(1850, 1, 1))
    check_scheduled_start(provider, "scheduled", date(2026, 1, 1))
    with pytest.raises(RunParameterError, match="scheduled runs start with snapshot 2026-01-01"):
        check_scheduled_start(provider, "scheduled", date(2025, 12, 31))
    assert parse_snapshot_date("1997-01-01") == date(1997, 1, 1) and parse_snapshot_date("2150-06-30").year == 2150


def test_landing_file_names_may_hold_spaces_but_no_folders(project):
    from batchops.config import ConfigIssue, load_config_set

    config = project.config_dir / "provider_a.yaml"
    config.write_text(config.read_text().replace("file: customers.csv", "file: Customers Export.csv"))
    assert configs(project).providers["provider_a"].entities["customers"].file == "Customers Export.csv"
    config.write_text(config.read_text().replace("file: Customers Export.csv", "file: ../customers.csv"))
    issues = load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir).issues
    problem: ConfigIssue = next(i for i in issues if i.field == "entities.customers.file")
    assert "'../customers.csv' must match" in problem.reason and "lowercase letters" not in problem.reason


@pytest.mark.parametrize(("slots", "threads", "cores", "fits"), [
    (2, 1, 2, True), (4, 1, 4, True), (1, None, 8, True), (2, None, 2, False), (4, 2, 4, False), (16, 1, 2, False)])
def test_worker_oversubscription_is_named_with_settings_that_fit(slots, threads, cores, fits):
    from batchops.settings import oversubscription

    problem = oversubscription(slots, threads, cores)
    assert (problem is None) == fits
    if problem:
        assert f"{cores} cores" in problem and "AIRFLOW__CELERY__WORKER_CONCURRENCY=" in problem
        suggested = int(problem.split("AIRFLOW__CELERY__WORKER_CONCURRENCY=")[1].split()[0])
        assert oversubscription(suggested, threads, cores) is None or suggested == 1
