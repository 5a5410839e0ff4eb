"""The DAG factory: every (provider, pipeline) pair becomes one DAG; a broken config becomes a
placeholder DAG that shows its error. The only module that knows Airflow's task API."""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from batchops.config import (
    ConfigIssue,
    ConfigSet,
    PipelineSpec,
    ProviderConfig,
    effective_config,
    load_config_set,
    slug,
)
from batchops.settings import Settings
from batchops.tasks import (
    StageBinding,
    run_dq_gate,
    run_ingest,
    run_load,
    run_plan,
    run_score,
    run_summarize,
    run_train,
    run_validate,
)

log = logging.getLogger(__name__)

SNAPSHOT_PARAM_DOC = (
    "Snapshot date (YYYY-MM-DD) of the provider's drop to process. Leave empty: a scheduled run uses its "
    "data interval end, a manual run the date it was triggered for."
)
SNAPSHOT_XCOM = "{{ ti.xcom_pull(task_ids='plan', key='snapshot_date') }}"


def _python_task(task_id: str, callable_, binding: StageBinding, **kwargs: Any):
    from airflow.providers.standard.operators.python import PythonOperator

    return PythonOperator(task_id=task_id, python_callable=functools.partial(callable_, binding), **kwargs)


def _build_dq_gate(binding: StageBinding):
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    # False = skip only the direct downstream, so summarize (all_done) still runs and reports BLOCKED.
    return ShortCircuitOperator(task_id="dq_gate", python_callable=functools.partial(run_dq_gate, binding),
                                ignore_downstream_trigger_rules=False,
                                doc_md="Short-circuits the run when dq_report.json says DQ failed.")


def _build_features(binding: StageBinding):
    from batchops.airflow_ops import WarehouseSQLOperator
    from batchops.stages.features import feature_parameters

    return WarehouseSQLOperator(
        task_id="build_features", provider_id=binding.provider.provider_id, settings=binding.settings,
        sql=list(binding.pipeline.features.sql),
        parameters={"snapshot_date": SNAPSHOT_XCOM, **feature_parameters(binding.pipeline)},
        doc_md="Runs the pipeline's feature SQL files in the provider warehouse with bound parameters.")


def _build_wait_for_model(binding: StageBinding):
    from batchops.airflow_ops import ApprovedModelSensor

    sensor = binding.pipeline.wait_for_model
    return ApprovedModelSensor(
        task_id="wait_for_model", provider_id=binding.provider.provider_id,
        model_pipeline=binding.pipeline.model_pipeline, settings=binding.settings, snapshot_date=SNAPSHOT_XCOM,
        mode=sensor.mode, poke_interval=sensor.poke_interval_seconds, timeout=sensor.timeout_seconds,
        doc_md="Waits for an approved, sha256-verified model trained on or before snapshot_date.")


STAGE_BUILDERS = {
    "plan": lambda b: _python_task("plan", run_plan, b),
    "ingest": lambda b: _python_task("ingest", run_ingest, b),
    "validate": lambda b: _python_task("validate", run_validate, b),
    "dq_gate": _build_dq_gate,
    "load": lambda b: _python_task("load", run_load, b),
    "build_features": _build_features,
    "train": lambda b: _python_task("train", run_train, b),
    "wait_for_model": _build_wait_for_model,
    "score": lambda b: _python_task("score", run_score, b),
    "summarize": lambda b: _python_task("summarize", run_summarize, b, trigger_rule="all_done", retries=0),
}


def _doc_md(provider: ProviderConfig, pipeline: PipelineSpec) -> str:
    entities = ", ".join(f"`{name}` ({spec.file})" for name, spec in provider.entities.items())
    return "\n".join([
        f"# {provider.provider_id} · {pipeline.pipeline_id}", "",
        provider.description or "", "", pipeline.description or "", "",
        f"**Stages:** {' → '.join(pipeline.stages)}", "",
        f"**Files per snapshot:** {entities} in `$BATCHOPS_DATA_DIR/{provider.landing_path}`", "",
        f"**snapshot_date:** {SNAPSHOT_PARAM_DOC}", "",
        "## Effective config (provider merged over `_defaults.yaml`, and the pipeline)", "",
        "```json", json.dumps(effective_config(provider, pipeline), indent=2), "```",
    ])


def build_dag(provider: ProviderConfig, pipeline: PipelineSpec, settings: Settings,
              config_files: dict[str, Path | None]) -> DAG:
    binding = StageBinding(provider, pipeline, settings, config_files)
    dag = DAG(
        dag_id=binding.dag_id,
        description=f"{pipeline.pipeline_id} for {provider.provider_id}",
        schedule=provider.schedule,
        start_date=datetime(provider.start_date.year, provider.start_date.month, provider.start_date.day),
        catchup=False,
        max_active_runs=4,
        tags=["batchops", f"provider:{provider.provider_id}", f"pipeline:{pipeline.pipeline_id}", *provider.tags],
        doc_md=_doc_md(provider, pipeline),
        template_searchpath=[str(settings.sql_dir)],
        default_args={"owner": provider.owner, "retries": provider.retries, "retry_delay": timedelta(seconds=30)},
        params={"snapshot_date": Param(None, type=["null", "string"], format="date",
                                       title="Snapshot date", description=SNAPSHOT_PARAM_DOC)},
    )
    with dag:
        previous = None
        for stage in pipeline.stages:
            task = STAGE_BUILDERS[stage](binding)
            if previous is not None:
                previous >> task
            previous = task
    return dag


def build_error_dag(file: str, issues: list[ConfigIssue]) -> DAG:
    """A DAG that shows a broken config's errors in the UI and fails with them if triggered."""
    from airflow.providers.standard.operators.python import PythonOperator

    message = "\n".join(f"- {issue}" for issue in issues)
    dag = DAG(
        dag_id=f"batchops_config_error__{slug(Path(file).stem)}",
        description=f"CONFIG ERROR in {Path(file).name}: {issues[0].field}: {issues[0].reason}"[:250],
        schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
        tags=["batchops", "config-error"],
        doc_md=f"# Config error\n\n`{file}` is invalid; its DAGs were not built:\n\n{message}\n\n"
               "Fix the file, then check it with `python -m batchops validate`.",
    )
    with dag:
        PythonOperator(task_id="config_error", python_callable=functools.partial(_raise_config_error, message))
    return dag


def _raise_config_error(message: str, **_: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(f"config error, fix the file and re-run `python -m batchops validate`:\n{message}")


def build_dags(settings: Settings) -> dict[str, DAG]:
    """All DAGs of a deployment: one per (provider, pipeline) pair, plus one per broken config file."""
    config_set: ConfigSet = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    dags: dict[str, DAG] = {}
    for provider, pipeline in config_set.dag_pairs():
        files = {"provider_config": config_set.provider_files[provider.provider_id],
                 "defaults": config_set.defaults_file,
                 "pipeline_config": config_set.pipeline_files[pipeline.pipeline_id]}
        dag = build_dag(provider, pipeline, settings, files)
        dags[dag.dag_id] = dag
    for file, issues in config_set.broken_files.items():
        log.warning("BatchOps config error in %s: %s", file, "; ".join(str(i) for i in issues))
        dag = build_error_dag(file, issues)
        dags[dag.dag_id] = dag
    return dags
