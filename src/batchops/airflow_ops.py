"""Airflow building blocks: a DuckDB DbApiHook for the provider warehouse, the SQL operator over
include/sql/, and the sensor that waits for an approved model."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import BaseSensorOperator

from batchops.settings import Settings
from batchops.sqlsafe import parameters_used


class DuckDBWarehouseHook(DbApiHook):
    """common-sql hook on the provider's warehouse file.

    The file is derived from the provider id, so a new provider needs no Airflow connection; the
    connection holds the provider's warehouse lock until it is closed.
    """

    conn_name_attr = "warehouse_id"
    default_conn_name = "batchops_warehouse"
    conn_type = "batchops_duckdb"
    hook_name = "BatchOps DuckDB warehouse"
    supports_autocommit = True  # DuckDB commits each statement unless a SQL file says BEGIN

    def __init__(self, provider_id: str, settings: Settings, after_statement=None, held=None, **kwargs: Any):
        super().__init__(warehouse_id=f"batchops_warehouse_{provider_id}", **kwargs)
        self.provider_id = provider_id
        self.settings = settings
        self.after_statement = after_statement
        self.held = held  # a LockedConnection the operator holds for its whole task, lent to each run()

    def get_conn(self):
        from batchops.storage.warehouse import LockedConnection

        return _Lent(self.held) if self.held is not None else LockedConnection(self.settings, self.provider_id)

    def get_uri(self) -> str:
        from batchops.storage.warehouse import warehouse_path

        return f"duckdb:///{warehouse_path(self.settings, self.provider_id)}"

    def set_autocommit(self, conn, autocommit: bool) -> None:
        """Transactions are explicit in the SQL files."""

    def get_autocommit(self, conn) -> bool:
        return True

    def _run_command(self, cur, sql_statement, parameters):
        from batchops.storage.warehouse import explain_warehouse_failure, warehouse_path

        try:
            # Each statement gets only the $names it uses: DuckDB rejects unused named parameters.
            super()._run_command(cur, sql_statement, parameters_used(sql_statement, parameters or {}) or None)
        except Exception as exc:
            explained = explain_warehouse_failure(exc, warehouse_path(self.settings, self.provider_id),
                                                  self.provider_id)
            if explained is None:
                raise
            raise explained from exc
        if self.after_statement is not None:
            self.after_statement(sql_statement)


class _Lent:
    """A held connection lent to DbApiHook.run, which closes what get_conn gives it: closing it is a no-op."""

    def __init__(self, connection):
        self._connection = connection

    def cursor(self):
        return self._connection.cursor()

    def commit(self) -> None:
        self._connection.commit()

    def close(self) -> None:
        """The lender closes it."""


class WarehouseSQLOperator(SQLExecuteQueryOperator):
    """SQLExecuteQueryOperator on DuckDBWarehouseHook; the rendered SQL shows in the UI."""

    def __init__(self, *, provider_id: str, settings: Settings, **kwargs: Any):
        kwargs.setdefault("split_statements", True)
        kwargs.setdefault("do_xcom_push", False)
        super().__init__(conn_id=f"batchops_warehouse_{provider_id}", **kwargs)
        self.provider_id = provider_id
        self.settings = settings

    committed_event: str | None = None  # logged while the task still holds the warehouse lock

    def get_db_hook(self) -> DuckDBWarehouseHook:
        return DuckDBWarehouseHook(self.provider_id, self.settings, after_statement=self._after_statement,
                                   held=getattr(self, "_held", None))

    def _after_statement(self, statement: str) -> None:
        run_dir = getattr(self, "_run_dir", None)
        if run_dir is not None and statement.lstrip().upper().startswith("INSERT"):
            from batchops.faults import crash_point

            crash_point(f"{self.task_id}.in_transaction", self.dag_id, run_dir)

    @property
    def _hook(self) -> DuckDBWarehouseHook:  # lineage code asks for it too
        return self.get_db_hook()

    def execute(self, context):
        from batchops.recovery import begin_attempt
        from batchops.storage.warehouse import open_warehouse
        from batchops.tasks import failing_fast, run_logger_for

        files = [self.sql] if isinstance(self.sql, str) else list(self.sql)
        rendered = dict(self.parameters or {})
        logger = run_logger_for(context, self.settings)
        self._run_dir = logger.path.parent
        begin_attempt(logger, context["ti"].try_number)
        with failing_fast(self.task_id), logger.timed("stage", task=self.task_id,
                                                      try_number=context["ti"].try_number):
            # One connection, so one hold of the provider lock, for every file and date: no other writer
            # (another run, a rebuild) comes in between, and the end is logged before anyone else goes on.
            with open_warehouse(self.settings, self.provider_id) as warehouse:
                self._held = warehouse
                try:
                    result, parameter_sets = None, self.parameter_sets(warehouse, rendered)
                    for text in files:
                        for parameters in parameter_sets:
                            # common-sql runs each list item whole; split each rendered file into statements
                            # here (DuckDB binds parameters one statement at a time).
                            self.sql, self.parameters = DbApiHook.split_sql_string(text), parameters
                            result = super().execute(context)
                    if self.committed_event:
                        logger.event(self.committed_event, pipeline=self.dag_id.split("__", 1)[-1],
                                     snapshot_date=str(rendered.get("snapshot_date")))
                finally:
                    self._held = None
            return result

    def parameter_sets(self, warehouse, parameters: dict) -> list[dict]:
        """The parameters of each run of every SQL file: one run by default."""
        return [parameters]


class FeatureSQLOperator(WarehouseSQLOperator):
    """The feature SQL files, each run once per as-of date of the drop (batchops.stages.features)."""

    committed_event = "features_built"

    def parameter_sets(self, warehouse, parameters: dict) -> list[dict]:
        from batchops.stages.features import customer_bounds, per_date_parameters

        bounds = customer_bounds(warehouse, str(parameters["snapshot_date"]), self.settings.feature_partition_customers)
        return per_date_parameters(parameters, bounds)


class ApprovedModelSensor(BaseSensorOperator):
    """Waits until the provider has an approved, intact model trained on or before the snapshot."""

    template_fields = ("snapshot_date",)

    def __init__(self, *, provider_id: str, model_pipeline: str, settings: Settings, snapshot_date: str,
                 trained_in_run: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.provider_id = provider_id
        self.model_pipeline = model_pipeline
        self.settings = settings
        self.snapshot_date = snapshot_date
        # after this run's own train: a rejected model with no approved one before it will not change by waiting
        self.trained_in_run = trained_in_run

    def poke(self, context) -> bool:
        from batchops.errors import ModelRejectedError, WarehouseError
        from batchops.models import find_approved_model, find_rejection, verify_model_file
        from batchops.runcontext import parse_snapshot_date

        as_of: date = parse_snapshot_date(self.snapshot_date)
        try:
            # A poke must not hang on a busy warehouse: wait a few seconds at most, then poke again later.
            quick = dataclasses.replace(self.settings, warehouse_lock_timeout_seconds=5.0)
            model = find_approved_model(quick, self.provider_id, self.model_pipeline, as_of)
            rejection = find_rejection(quick, self.provider_id, self.model_pipeline, as_of) \
                if model is None and self.trained_in_run else None
        except WarehouseError as exc:  # another run holds the warehouse: look again at the next poke
            self.log.info("warehouse busy, will poke again: %s", exc)
            return False
        if model is None:
            if rejection:
                raise ModelRejectedError(
                    f"this run's model was not approved and no earlier approved model of {self.provider_id}/"
                    f"{self.model_pipeline} trained on or before {as_of} can score instead: {rejection}. Fix what the "
                    "guardrail names (more or other data, or the provider's guardrails), then run the DAG again")
            self.log.info("no approved model of %s/%s trained on or before %s yet", self.provider_id,
                          self.model_pipeline, as_of)
            return False
        verify_model_file(self.settings, self.provider_id, model)  # a tampered model fails now, not later
        self.log.info("approved model %s found (trained on %s)", model.model_id, model.training_snapshot)
        return True

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowSensorTimeout

        from batchops.errors import BatchOpsError
        from batchops.tasks import failing_fast, run_logger_for

        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            timeout = AirflowSensorTimeout(
                f"no approved model of {self.provider_id}/{self.model_pipeline} trained on or before "
                f"{self.snapshot_date} appeared within {self.timeout}s. Run the DAG "
                f"{self.provider_id}__{self.model_pipeline} for this or an earlier snapshot to train and approve "
                "one, then clear this task.")
            run_logger_for(context, self.settings).failed("stage", timeout, task=self.task_id)
            raise timeout from exc
        except BatchOpsError as exc:
            # e.g. the approved model's file is missing or was changed. The sensor logs no stage events while
            # it pokes, so it leaves the cause here for run_summary.md.
            run_logger_for(context, self.settings).failed("stage", exc, task=self.task_id)
            with failing_fast(self.task_id):
                raise


WAITING_RUN_TYPES = {"scheduled"}  # manual, backfill and asset-triggered runs expect their files to be there


class LandingDropSensor(BaseSensorOperator):
    """A scheduled run waits (reschedule mode) for the snapshot's landing files and ready_marker. When they
    never come the task is skipped, so the run ends NO DROP instead of failing; a manual run does not wait."""

    template_fields = ("snapshot_date",)

    def __init__(self, *, provider, settings: Settings, snapshot_date: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.provider = provider
        self.settings = settings
        self.snapshot_date = snapshot_date

    def poke(self, context) -> bool:
        from batchops.runcontext import parse_snapshot_date

        run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
        if run_type not in WAITING_RUN_TYPES:
            self.log.info("%s run: not waiting for the drop (ingest checks the files)", run_type)
            return True
        missing = self.provider.missing_landing_files(self.settings.data_dir, parse_snapshot_date(self.snapshot_date))
        if missing:
            self.log.info("drop for %s not complete yet, missing: %s", self.snapshot_date, ", ".join(missing))
            return False
        self.log.info("drop for %s is complete", self.snapshot_date)
        return True

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

        from batchops.runcontext import parse_snapshot_date
        from batchops.tasks import run_logger_for

        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            missing = self.provider.missing_landing_files(self.settings.data_dir,
                                                          parse_snapshot_date(self.snapshot_date))
            run_logger_for(context, self.settings).event(
                "no_drop", level="WARNING", task=self.task_id, waited_seconds=self.timeout, missing=missing)
            raise AirflowSkipException(f"no drop for {self.snapshot_date} within {self.timeout}s; missing: "
                                       f"{', '.join(missing)}") from exc
        except Exception as exc:
            # its own error (a folder it cannot list, ...): the reason goes to the run's log for the summary, and
            # Airflow retries the task (landing_wait_retries)
            try_number = getattr(context.get("ti"), "try_number", None)
            run_logger_for(context, self.settings).failed("stage", exc, task=self.task_id, try_number=try_number)
            raise
