"""DAG integrity: the factory's DAGs import cleanly, fast, without heavy modules, wired as specified."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import REPO

MODEL_TASKS = ["plan", "wait_for_drop", "ingest", "validate", "dq_gate", "load", "build_features", "train", "wait_for_model", "score",
               "summarize"]
SCORING_TASKS = [t for t in MODEL_TASKS if t != "train"]


def dagbag_for(home, monkeypatch) -> DagBag:
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("BATCHOPS_HOME", str(home))
    return DagBag(str(REPO / "dags"))


@pytest.fixture
def dagbag(project, monkeypatch) -> DagBag:
    return dagbag_for(project.home, monkeypatch)


def test_one_dag_per_provider_and_pipeline_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == ["batchops_maintenance"] + [f"provider_{p}__{q}" for p in "abc" for q in (
        "propensity_model", "propensity_scoring")]


def test_the_maintenance_dag_prunes_each_provider_on_its_queue(project, monkeypatch):
    (project.config_dir / "provider_b.yaml").write_text((project.config_dir / "provider_b.yaml").read_text()
                                                        + "queue: shard_b\n")
    dag = dagbag_for(project.home, monkeypatch).dags["batchops_maintenance"]
    assert dag.schedule == "@daily" and dag.max_active_runs == 1
    assert {task.task_id: task.queue for task in dag.tasks} == {
        "prune__provider_a": "default", "prune__provider_b": "shard_b", "prune__provider_c": "default"}


@pytest.mark.parametrize(("dag_id", "tasks"), [("provider_a__propensity_model", MODEL_TASKS),
                                               ("provider_b__propensity_scoring", SCORING_TASKS)])
def test_tasks_form_the_pipeline_chain(dagbag, dag_id, tasks):
    dag = dagbag.dags[dag_id]
    assert sorted(dag.task_ids) == sorted(tasks)
    for upstream, downstream in zip(tasks, tasks[1:], strict=False):
        assert dag.task_dict[downstream].upstream_task_ids == {upstream}, downstream


def test_gate_short_circuits_and_summary_always_runs(dagbag):
    dag = dagbag.dags["provider_a__propensity_model"]
    gate = dag.task_dict["dq_gate"]
    assert type(gate).__name__ == "ShortCircuitOperator" and gate.ignore_downstream_trigger_rules is False
    assert dag.task_dict["summarize"].trigger_rule == "all_done"
    assert dag.task_dict["wait_for_model"].mode == "reschedule"
    wait_for_drop = dag.task_dict["wait_for_drop"]  # scheduled runs wait for the drop without holding a slot
    assert wait_for_drop.mode == "reschedule" and wait_for_drop.timeout == 720 * 60
    assert type(dag.task_dict["build_features"]).__name__ == "FeatureSQLOperator"


def test_dag_metadata_tags_owner_params_and_effective_config(dagbag):
    dag = dagbag.dags["provider_b__propensity_model"]
    assert {"batchops", "provider:provider_b", "pipeline:propensity_model"} <= set(dag.tags)
    assert dag.default_args["owner"] == "batchops" and dag.default_args["retries"] == 1
    assert {task.queue for task in dag.tasks} == {"default"}  # the provider's queue (_defaults.yaml)
    assert dag.schedule == "@daily" and dag.catchup is False
    schema = dag.params.get_param("snapshot_date").schema
    assert schema["format"] == "date" and "string" in schema["type"]
    assert '"delimiter": ";"' in dag.doc_md and "sales.csv" in dag.doc_md  # merged config visible in the UI


def test_broken_config_becomes_an_error_dag_and_the_rest_still_load(project, monkeypatch):
    (project.config_dir / "provider_x.yaml").write_text("provider_id: provider_x\nentities: {}\nshedule: x\n")
    dagbag = dagbag_for(project.home, monkeypatch)
    assert dagbag.import_errors == {}
    assert "provider_a__propensity_model" in dagbag.dags and len(dagbag.dags) == 10  # 3 x 2, maintenance, 1 + 2
    from batchops.factory import error_dag_id

    error_dag = dagbag.dags[error_dag_id(str(project.config_dir / "provider_x.yaml"))]
    assert error_dag.dag_id.startswith("batchops_config_error__provider_x_")
    assert "shedule: unknown key" in error_dag.doc_md and "config-error" in error_dag.tags
    for pipeline in ("propensity_model", "propensity_scoring"):  # the error on the DAG pages people open too
        own = dagbag.dags[f"provider_x__{pipeline}"]
        assert own.description.startswith("CONFIG ERROR in provider_x.yaml") and "shedule" in own.description
        assert own.task_ids == ["config_error"]


def serialized(dag) -> dict:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.to_dict(dag)


def test_a_task_parse_builds_only_its_providers_dags_as_the_full_parse_does(project, monkeypatch):
    """A task's parse (Airflow names the DAG in the parsing context) builds only the DAGs of that provider's
    file, identical to those of the DAG processor's full parse."""
    full = dagbag_for(project.home, monkeypatch)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "provider_b__propensity_scoring")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "score")
    one = dagbag_for(project.home, monkeypatch)
    assert one.import_errors == {}
    assert sorted(one.dags) == ["provider_b__propensity_model", "provider_b__propensity_scoring"]
    for dag_id, dag in one.dags.items():
        assert serialized(dag) == serialized(full.dags[dag_id]), dag_id


@pytest.mark.parametrize("dag_id", ["batchops_maintenance", "provider_x__propensity_model", "no_such_dag",
                                    "provider_a__propensity_model"])
def test_a_task_parse_of_anything_but_a_healthy_providers_dag_gets_the_full_set(project, monkeypatch, dag_id):
    """The maintenance DAG, a broken file's error DAGs, an unknown id and a provider id two files claim come from the
    full parse, exactly as the DAG processor made them."""
    (project.config_dir / "provider_x.yaml").write_text("provider_id: provider_x\nentities: {}\nshedule: x\n")
    copy = (project.config_dir / "provider_a.yaml").read_text()  # a second file that says it is provider_a
    (project.config_dir / "provider_a_copy.yaml").write_text(copy)
    full = dagbag_for(project.home, monkeypatch)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
    again = dagbag_for(project.home, monkeypatch)
    assert sorted(again.dags) == sorted(full.dags)
    if dag_id in full.dags:
        assert serialized(again.dags[dag_id]) == serialized(full.dags[dag_id])


def test_parsing_is_fast_and_imports_nothing_heavy():
    probe = (
        "import json, sys, time\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "started = time.perf_counter(); bag = DagBag(sys.argv[1]); seconds = time.perf_counter() - started\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'duckdb', 'numpy', 'matplotlib', 'pytesseract') if m in sys.modules]\n"
        "print(json.dumps({'seconds': seconds, 'dags': len(bag.dags), 'heavy': heavy}))\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "BATCHOPS_HOME": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe, str(REPO / "dags")], env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    result = json.loads(out)
    assert result["dags"] >= 4 and result["heavy"] == []
    assert result["seconds"] < 1.0, result


def test_every_task_of_a_provider_goes_to_its_queue(project, monkeypatch):
    config = project.config_dir / "provider_b.yaml"
    config.write_text(config.read_text() + "queue: shard_b\n")
    bag = dagbag_for(project.home, monkeypatch)
    for pipeline in ("propensity_model", "propensity_scoring"):
        assert {task.queue for task in bag.dags[f"provider_b__{pipeline}"].tasks} == {"shard_b"}
    assert {task.queue for task in bag.dags["provider_a__propensity_model"].tasks} == {"default"}
