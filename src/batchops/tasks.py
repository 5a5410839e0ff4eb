"""Task callables: the edge between Airflow's context and the plain stage functions.

Each callable rebuilds the RunContext from the DAG's binding and the run (snapshot_date comes from
the plan task's XCom), calls one stage, logs start/finish to logs.jsonl, and turns errors that a
retry cannot fix into AirflowFailException so the task fails at once with the stage's message.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchops.config import PipelineSpec, ProviderConfig
from batchops.errors import (
    ArtifactWriteError,
    BatchOpsError,
    LandingNotReadyError,
    WarehouseError,
)
from batchops.runcontext import RunContext, check_run_conf, parse_snapshot_date, resolve_snapshot_date
from batchops.runlog import RunLogger
from batchops.settings import Settings

RETRYABLE = (WarehouseError, ArtifactWriteError, LandingNotReadyError)


@dataclass(frozen=True)
class StageBinding:
    """What a DAG's tasks know at parse time: its provider, pipeline, settings and config files."""

    provider: ProviderConfig
    pipeline: PipelineSpec
    settings: Settings
    config_files: dict[str, Path | None]

    @property
    def dag_id(self) -> str:
        return f"{self.provider.provider_id}__{self.pipeline.pipeline_id}"

    def run_context(self, context: dict[str, Any], snapshot_date=None) -> RunContext:
        if snapshot_date is None:
            pulled = context["ti"].xcom_pull(task_ids="plan", key="snapshot_date")
            if not pulled:
                raise BatchOpsError("plan has not run in this DAG run (no snapshot_date); clear the run from plan")
            snapshot_date = parse_snapshot_date(pulled)
        return RunContext(self.dag_id, context["run_id"], self.provider, self.pipeline, snapshot_date, self.settings)


def run_logger_for(context: dict[str, Any], settings: Settings) -> RunLogger:
    from batchops.artifacts import run_dir_for

    run_dir = run_dir_for(settings.runs_dir, context["dag"].dag_id, context["run_id"])
    return RunLogger(run_dir / "logs.jsonl", context["ti"].task_id, settings.run_log_max_bytes)


@contextmanager
def failing_fast(task_id: str):
    """A BatchOps error that a retry may fix is raised as it is; any other (bad input, a damaged file)
    becomes AirflowFailException, so the task fails at once with the stage's message, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except BatchOpsError as exc:
        if isinstance(exc, RETRYABLE):
            raise
        raise AirflowFailException(f"{task_id}: {exc}") from exc


@contextmanager
def _stage_edge(ctx: RunContext, context: dict[str, Any]):
    from batchops.recovery import begin_attempt

    task_id, try_number = context["ti"].task_id, context["ti"].try_number
    logger = ctx.logger(task_id)
    with failing_fast(task_id):
        begin_attempt(logger, try_number, (ctx.settings.model_store(ctx.provider.provider_id),))
        with logger.timed("stage", task=task_id, try_number=try_number):
            yield


def run_plan(binding: StageBinding, **context: Any) -> dict[str, str]:
    from airflow.sdk.exceptions import AirflowFailException

    from batchops.errors import RunParameterError
    from batchops.stages.plan import check_scheduled_start, write_plan

    dag_run = context["dag_run"]
    conf_value = (context.get("params") or {}).get("snapshot_date") or (dag_run.conf or {}).get("snapshot_date")
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    try:
        check_run_conf(dag_run.conf)
        snapshot_date, source = resolve_snapshot_date(
            conf_value, run_type, context.get("data_interval_end"), context.get("logical_date"),
            getattr(dag_run, "run_after", None))
        check_scheduled_start(binding.provider, run_type, snapshot_date)
    except RunParameterError as exc:
        # No snapshot, so no RunContext: the run folder still gets the reason, for summarize and the UI.
        run_logger_for(context, binding.settings).failed("stage", exc, task="plan")
        raise AirflowFailException(f"plan: {exc}") from exc
    ctx = binding.run_context(context, snapshot_date)
    with _stage_edge(ctx, context):
        write_plan(ctx, source, binding.config_files)
    context["ti"].xcom_push(key="snapshot_date", value=snapshot_date.isoformat())
    return {"snapshot_date": snapshot_date.isoformat(), "source": source, "run_dir": str(ctx.run_dir)}


def _stage_task(stage: Callable[[RunContext], dict[str, Any]], summarize_result: Callable[[dict], Any]):
    def run(binding: StageBinding, **context: Any):
        ctx = binding.run_context(context)
        with _stage_edge(ctx, context):
            return summarize_result(stage(ctx))

    run.__name__ = f"run_{stage.__name__}"
    return run


def run_ingest(binding: StageBinding, **context: Any):
    from batchops.stages.ingest import ingest

    return _stage_task(ingest, lambda r: {e: v["rows"] for e, v in r["entities"].items()})(binding, **context)


def run_validate(binding: StageBinding, **context: Any):
    from batchops.stages.validate import validate

    return _stage_task(validate, lambda r: {"passed": r["passed"], "failed_checks": r["failed_checks"]})(
        binding, **context)


def run_dq_gate(binding: StageBinding, **context: Any) -> bool:
    from batchops.stages.validate import dq_verdict

    ctx = binding.run_context(context)
    with _stage_edge(ctx, context):
        passed, reason = dq_verdict(ctx)
        ctx.logger("dq_gate").event("dq_gate", level="INFO" if passed else "WARNING", passed=passed, reason=reason)
    return passed


def run_load(binding: StageBinding, **context: Any):
    from batchops.stages.load import load

    return _stage_task(load, lambda r: r["rows"])(binding, **context)


def run_train(binding: StageBinding, **context: Any):
    from batchops.stages.train import train

    return _stage_task(train, lambda r: r)(binding, **context)


def run_score(binding: StageBinding, **context: Any):
    from batchops.stages.score import score

    return _stage_task(score, lambda r: {"rows": r["rows"], "model_id": r["model_id"]})(binding, **context)


def run_summarize(binding: StageBinding, **context: Any):
    from airflow.sdk.exceptions import AirflowFailException

    from batchops.stages.summarize import summarize

    ti = context["ti"]
    try:
        snapshot = ti.xcom_pull(task_ids="plan", key="snapshot_date")
    except Exception:  # noqa: BLE001 - plan may have failed before pushing
        snapshot = None
    states_by_run = ti.get_task_states(dag_id=binding.dag_id, run_ids=[context["run_id"]])
    states = states_by_run.get(context["run_id"], {})
    task_states = {task: states.get(task) for task in binding.pipeline.stages if task != "summarize"}
    if not snapshot:
        from batchops.stages.summarize import summarize_unplanned

        logger = run_logger_for(context, binding.settings)
        summary = summarize_unplanned(logger.path.parent, binding.dag_id, context["run_id"], task_states)
        raise AirflowFailException(f"run incomplete: plan did not resolve a snapshot_date; see {summary}")
    ctx = binding.run_context(context, parse_snapshot_date(snapshot))
    result = summarize(ctx, task_states)
    if result["failed"]:
        # summarize runs on all_done; failing here keeps the DAG run's state honest.
        raise AirflowFailException(f"run incomplete, failed tasks: {result['failed']}; see {ctx.run_dir}/run_summary.md")
    return result


def run_prune(provider_id: str, settings: Settings, **context: Any) -> dict[str, Any]:
    """The batchops_maintenance DAG's task for one provider: retention as `python -m batchops prune` does it,
    counted back from the run's date. Prints each removal with its reason to the task log."""
    from datetime import UTC, datetime

    from airflow.sdk.exceptions import AirflowFailException

    from batchops.config import load_config_set
    from batchops.storage.retention import apply_prune, backup_before_prune, plan_prune

    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    if provider_id not in config_set.providers:
        raise AirflowFailException(f"{provider_id}'s config is no longer valid; nothing pruned (python -m batchops "
                                   "validate)")
    moment = context.get("data_interval_end") or datetime.now(UTC)
    backed_up = backup_before_prune(settings, config_set, provider_id)
    if backed_up:
        print(backed_up)
    plan = plan_prune(settings, config_set, provider_id, moment.date())
    for removal in plan.removals:
        print(removal.line())
    done = apply_prune(settings, plan)
    records = done["airflow_records"] or {}
    if records.get("returncode"):
        raise AirflowFailException(f"airflow db clean failed: {records.get('output', '')[-1000:]}")
    return {"removed": done["removed"], "bytes": done["bytes"]}
