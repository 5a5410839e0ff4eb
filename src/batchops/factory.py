"""The DAG factory: every (provider, pipeline) pair becomes one DAG; a broken config becomes a
placeholder DAG that shows its error. The only module that knows Airflow's task API."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from batchops.access import access_control
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
DAG_START = datetime(1000, 1, 1, tzinfo=UTC)


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
    from batchops.airflow_ops import FeatureSQLOperator
    from batchops.stages.features import feature_parameters

    return FeatureSQLOperator(
        task_id="build_features", provider_id=binding.provider.provider_id, settings=binding.settings,
        sql=list(binding.pipeline.features.sql),
        parameters={"snapshot_date": SNAPSHOT_XCOM, **feature_parameters(binding.pipeline)},
        doc_md="Runs the pipeline's feature SQL files in the provider warehouse with bound parameters, each "
               "once per as-of date (the snapshot, then the training dates) with `$as_of` and `$purpose`.")


def _build_wait_for_model(binding: StageBinding):
    from batchops.airflow_ops import ApprovedModelSensor

    sensor = binding.pipeline.wait_for_model
    return ApprovedModelSensor(
        task_id="wait_for_model", provider_id=binding.provider.provider_id,
        model_pipeline=binding.pipeline.model_pipeline, settings=binding.settings, snapshot_date=SNAPSHOT_XCOM,
        trained_in_run="train" in binding.pipeline.stages, mode=sensor.mode, poke_interval=sensor.poke_interval_seconds, timeout=sensor.timeout_seconds,
        doc_md="Waits for an approved, sha256-verified model trained on or before snapshot_date.")


def _build_wait_for_drop(binding: StageBinding):
    from batchops.airflow_ops import LandingDropSensor

    provider = binding.provider
    return LandingDropSensor(
        task_id="wait_for_drop", provider=provider, settings=binding.settings, snapshot_date=SNAPSHOT_XCOM,
        mode="reschedule", poke_interval=provider.landing_poke_seconds, timeout=provider.landing_timeout_minutes * 60,
        # an error of the sensor's own (the API server restarting between pokes) is retried; the timeout still
        # counts from the first try, so a retry never waits longer than landing_timeout_minutes in all
        retries=provider.landing_wait_retries, retry_delay=timedelta(seconds=provider.landing_wait_retry_seconds),
        doc_md="Scheduled runs: waits for the snapshot's landing files (and ready_marker); when they never come the "
               "run ends NO DROP. Manual runs pass at once. Its own errors are retried (landing_wait_retries).")


STAGE_BUILDERS = {
    "plan": lambda b: _python_task("plan", run_plan, b),
    "wait_for_drop": _build_wait_for_drop,
    "ingest": lambda b: _python_task("ingest", run_ingest, b),
    "validate": lambda b: _python_task("validate", run_validate, b),
    "dq_gate": _build_dq_gate,
    "load": lambda b: _python_task("load", run_load, b),
    "build_features": _build_features,
    "train": lambda b: _python_task("train", run_train, b),
    "wait_for_model": _build_wait_for_model,
    "score": lambda b: _python_task("score", run_score, b),
    "summarize": lambda b: _python_task("summarize", run_summarize, b, trigger_rule="all_done", retries=0,
                                        **_alert_callbacks(b)),
}


def _alert_callbacks(binding: StageBinding) -> dict[str, Any]:
    """summarize's callbacks when the provider asks for alerts: summarize ends every run, and fails exactly when
    the run failed."""
    if not binding.provider.alerts.on:
        return {}
    from batchops.alerts import RunAlertNotifier

    def notifier(failed: bool) -> RunAlertNotifier:
        return RunAlertNotifier(binding.provider, binding.dag_id, binding.settings.runs_dir, failed)

    return {"on_success_callback": notifier(False), "on_failure_callback": notifier(True)}


def _doc_md(provider: ProviderConfig, pipeline: PipelineSpec) -> str:
    entities = ", ".join(f"`{name}` ({spec.file})" for name, spec in provider.entities.items())
    return "\n".join([
        f"# {provider.provider_id} · {pipeline.pipeline_id}", "",
        provider.description or "", "", pipeline.description or "", "",
        f"**Stages:** {' → '.join(pipeline.stages)}", "",
        f"**Files per snapshot:** {entities} in `$BATCHOPS_DATA_DIR/{provider.landing_path}`", "",
        f"**snapshot_date:** {SNAPSHOT_PARAM_DOC}", "",
        "## Effective config (provider merged over `_defaults.yaml`, and the pipeline)", "",
        "```json", _config_json(effective_config(provider, pipeline)), "```",
    ])


def _config_json(config: dict[str, Any]) -> str:
    """The effective config as JSON with one top-level key a line: json's C encoder (indent= would take the
    pure-Python one, a quarter of a second per thousand DAGs at every parse)."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value, default=str)}"
                                for key, value in config.items()) + "\n}"


def build_dag(provider: ProviderConfig, pipeline: PipelineSpec, settings: Settings,
              config_files: dict[str, Path | None]) -> DAG:
    binding = StageBinding(provider, pipeline, settings, config_files)
    dag = DAG(
        dag_id=binding.dag_id,
        description=f"{pipeline.pipeline_id} for {provider.provider_id}",
        schedule=provider.schedule,
        # Airflow creates no task for a run whose logical date is before the DAG's start_date, so a
        # historical snapshot would "succeed" with zero tasks: the DAG starts in the distant past (with
        # catchup off the scheduler still begins at today's interval; without any start_date it would
        # wait for the next one). Scheduled runs honour the provider's start_date in plan instead.
        start_date=DAG_START,
        catchup=False,
        max_active_runs=4,
        tags=["batchops", f"provider:{provider.provider_id}", f"pipeline:{pipeline.pipeline_id}", *provider.tags],
        doc_md=_doc_md(provider, pipeline),
        template_searchpath=[str(settings.sql_dir)],
        # every task on the provider's Celery queue: the worker that holds its warehouse runs them all
        default_args={"owner": provider.owner, "retries": provider.retries, "retry_delay": timedelta(seconds=30),
                      "queue": provider.queue},
        params={"snapshot_date": Param(None, type=["null", "string"], format="date",
                                       title="Snapshot date", description=SNAPSHOT_PARAM_DOC)},
        access_control=access_control(provider.access_roles),  # per-provider roles (FAB auth manager)
    )
    with dag:
        previous = None
        for stage in pipeline.stages:
            task = STAGE_BUILDERS[stage](binding)
            if previous is not None:
                previous >> task
            previous = task
    return dag


MAINTENANCE_DAG_ID = "batchops_maintenance"


def build_maintenance_dag(config_set: ConfigSet, settings: Settings) -> DAG:
    """Daily retention: one prune task per provider, on the provider's queue (its warehouse's worker)."""
    from airflow.providers.standard.operators.python import PythonOperator

    from batchops.tasks import run_prune

    dag = DAG(
        dag_id=MAINTENANCE_DAG_ID, schedule="@daily", start_date=DAG_START, catchup=False, max_active_runs=1,
        tags=["batchops", "maintenance"], description="Retention of every provider: rows, run folders, models, "
                                                       "Airflow's records (python -m batchops prune)",
        doc_md="# BatchOps maintenance\n\nOnce a day, for each provider: `python -m batchops prune` as its "
               "`retention` settings say (docs/operate.md, Retention). Each task prints what it removed and why.",
        default_args={"owner": "batchops", "retries": 1, "retry_delay": timedelta(minutes=5)},
    )
    with dag:
        for provider in config_set.providers.values():
            PythonOperator(task_id=f"prune__{provider.provider_id}", queue=provider.queue,
                           python_callable=functools.partial(run_prune, provider.provider_id, settings))
    return dag


def error_dag_id(file: str) -> str:
    """One id per broken file: the name's slug, plus a hash of the name so that files whose names slug
    alike (provider-x.yaml, provider_x.yml) still get a DAG each."""
    name = Path(file).name
    return f"batchops_config_error__{slug(Path(file).stem)}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def build_error_dag(file: str, issues: list[ConfigIssue], dag_id: str | None = None) -> DAG:
    """A DAG that shows a broken config's errors in the UI and fails with them if triggered; by default
    named after the file, or under the id of a DAG the file would have made."""
    from airflow.providers.standard.operators.python import PythonOperator

    message = "\n".join(f"- {issue}" for issue in issues)
    dag = DAG(
        dag_id=dag_id or error_dag_id(file),
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


def check_like_the_dag_processor(dag: DAG) -> None:
    """What Airflow's DagBag does to each DAG before it accepts it; run here, a refusal becomes this
    provider's error DAG instead of an import error that would take every BatchOps DAG with it."""
    dag.validate()
    dag.check_cycle()
    dag.resolve_template_files()


@dataclass
class DagSet:
    """Every DAG of a deployment and every problem found while building them (what validate reports)."""

    config_set: ConfigSet
    dags: dict[str, DAG] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)  # config issues plus DAG-building refusals
    broken_files: dict[str, list[ConfigIssue]] = field(default_factory=dict)


def dag_id_of(provider: ProviderConfig, pipeline: PipelineSpec) -> str:
    return f"{provider.provider_id}__{pipeline.pipeline_id}"


def sole_provider_file(config_set: ConfigSet, dag_id: str) -> str | None:
    """The provider file that makes `dag_id`, when that file and no other makes each of its DAG ids (so its
    DAGs come out the same whether built alone or with every other file); None otherwise."""
    makers: dict[str, set[str]] = {}
    for provider, pipeline in config_set.dag_pairs():
        makers.setdefault(dag_id_of(provider, pipeline), set()).add(
            str(config_set.provider_files[provider.provider_id]))
    if len(makers.get(dag_id, ())) != 1:
        return None
    (file,) = makers[dag_id]
    return file if all(len(files) == 1 for files in makers.values() if file in files) else None


def build_dag_set(settings: Settings, only_dag_id: str | None = None) -> DagSet:
    """One DAG per (provider, pipeline) pair, plus one error DAG per broken config file.

    only_dag_id (a task's parse, Airflow's parsing context): only the DAGs of the provider file that makes it,
    built exactly as in the full set; at 1,000 providers a task otherwise built 2,001 DAGs to run one task.
    Anything else (an error DAG, the maintenance DAG, a file with a refused DAG, an id two files make) gets
    the full set, whose `issues` only it holds complete."""
    config_set: ConfigSet = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    only_file = sole_provider_file(config_set, only_dag_id) if only_dag_id else None
    if only_file is not None:
        alone = _dag_set(settings, config_set, only_file)
        if only_file not in alone.broken_files:
            return alone
        # the file shows as error DAGs, which come from the full set (built from the configs already loaded)
    return _dag_set(settings, config_set, None)


def _dag_set(settings: Settings, config_set: ConfigSet, only_file: str | None) -> DagSet:
    """build_dag_set's loop over the loaded configs: every file, or only `only_file`'s DAGs (no error DAGs,
    no maintenance DAG; the caller falls back to every file when that file is broken)."""
    result = DagSet(config_set, issues=list(config_set.issues),
                    broken_files={file: list(issues) for file, issues in config_set.broken_files.items()})
    built: dict[str, list[DAG]] = {}
    owners: dict[str, str] = {}
    for provider, pipeline in config_set.dag_pairs():
        provider_file = str(config_set.provider_files[provider.provider_id])
        if only_file is not None and provider_file != only_file:
            continue
        files = {"provider_config": config_set.provider_files[provider.provider_id],
                 "defaults": config_set.defaults_file,
                 "pipeline_config": config_set.pipeline_files[pipeline.pipeline_id]}
        dag_id = dag_id_of(provider, pipeline)
        problem = None
        if dag_id in owners:
            problem = ConfigIssue(provider_file, "provider_id", f"DAG id {dag_id} is also made by {owners[dag_id]}")
        else:
            try:
                dag = build_dag(provider, pipeline, settings, files)
                check_like_the_dag_processor(dag)
            except Exception as exc:  # noqa: BLE001 - any refusal of Airflow's is this provider's config error
                problem = ConfigIssue(provider_file, f"pipelines.{pipeline.pipeline_id}",
                                      f"Airflow refuses DAG {dag_id}: {type(exc).__name__}: {exc}")
        if problem is not None:
            result.issues.append(problem)
            result.broken_files.setdefault(provider_file, []).append(problem)
            continue
        owners[dag_id] = provider_file
        built.setdefault(provider_file, []).append(dag)
    if only_file is not None:
        result.dags.update((dag.dag_id, dag) for dag in built.get(only_file, ()))
        return result
    for provider_file, dags in built.items():
        if provider_file in result.broken_files:
            continue  # a file with any refused DAG shows as one error DAG, like a file that fails validation
        result.dags.update((dag.dag_id, dag) for dag in dags)
    for file, issues in result.broken_files.items():
        log.warning("BatchOps config error in %s: %s", file, "; ".join(str(i) for i in issues))
        dag = build_error_dag(file, issues)
        result.dags[dag.dag_id] = dag
    if config_set.providers:
        result.dags[MAINTENANCE_DAG_ID] = build_maintenance_dag(config_set, settings)
    for file, issues in result.broken_files.items():
        # The error also on the pages people open: the broken provider's own DAG ids, when they are free.
        for dag_id in expected_dag_ids(Path(file), settings, config_set):
            if dag_id not in result.dags:
                result.dags[dag_id] = build_error_dag(file, issues, dag_id=dag_id)
    return result


def expected_dag_ids(file: Path, settings: Settings, config_set: ConfigSet) -> list[str]:
    """The DAG ids a broken provider file would have made: its provider_id (or the file name) with its
    pipelines (or the defaults', or every pipeline). [] for files that are not provider configs."""
    import re

    from batchops.config import DEFAULTS_FILE_NAME, IDENTIFIER_PATTERN
    from batchops.yaml_loader import read_yaml_file

    if file.parent != settings.config_dir or file.name == DEFAULTS_FILE_NAME:
        return []

    def readable(path: Path | None) -> dict[str, Any]:
        try:
            data = read_yaml_file(path) if path and path.is_file() else {}
        except Exception:  # noqa: BLE001 - a file too broken to read still has a name
            return {}
        return data if isinstance(data, dict) else {}

    def identifier(value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(IDENTIFIER_PATTERN, value) is not None and "__" not in value

    data = readable(file)
    provider_id = data.get("provider_id") if identifier(data.get("provider_id")) else slug(file.stem)
    if not identifier(provider_id):
        return []
    for source in (data, readable(config_set.defaults_file)):
        pipelines = source.get("pipelines")
        names = list(pipelines) if isinstance(pipelines, (list, dict)) else []
        names = [name for name in names if identifier(name)]
        if names:
            break
    else:
        names = sorted(config_set.pipelines)
    return [f"{provider_id}__{name}" for name in names]


def build_dags(settings: Settings, only_dag_id: str | None = None) -> dict[str, DAG]:
    """All DAGs of a deployment (what dags/batchops_dags.py puts into its globals); with only_dag_id (the DAG a
    task runs, from Airflow's parsing context), those of its provider file only (build_dag_set)."""
    return build_dag_set(settings, only_dag_id).dags
