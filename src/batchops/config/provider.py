"""Provider configs: where a provider's files land, how to read each entity, how strict DQ is."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from batchops.config.common import (
    INTERNAL_TABLES,
    SCHEDULE_PRESETS,
    ColumnType,
    DagPart,
    Fraction,
    Identifier,
    StrictModel,
    Tag,
)
from batchops.config.pipeline import PipelineOverride


class NumberFormat(StrictModel):
    """How a numeric column's values are written: `amount: {..., number: {thousands: ",", currency: ["$"],
    negative: [minus, parentheses]}}`. Read the same way from a CSV and from a scanned statement."""

    thousands: Literal[",", ".", "'", " ", ""] = Field("", description=(
        "The separator between groups of three digits ('' none; ' ' also a no-break space); values must group "
        "by three."))
    decimal: Literal[".", ","] = Field(".", description="The decimal separator.")
    currency: list[Annotated[str, Field(min_length=1, max_length=8)]] = Field(default_factory=list, description=(
        "Symbols or codes stripped at either end of a value, e.g. ['$', 'USD']."))
    negative: list[Literal["minus", "parentheses", "trailing_minus", "cr_dr"]] = Field(
        default_factory=lambda: ["minus"], min_length=1, description=(
            "How a negative amount is written: minus (-12.50), parentheses ((12.50)), trailing_minus (12.50-), "
            "cr_dr (12.50 DR is negative, 12.50 CR positive). A sign written another way makes the value invalid."))

    @model_validator(mode="after")
    def _separators_differ(self) -> NumberFormat:
        if self.thousands == self.decimal:
            raise ValueError(f"thousands and decimal are both {self.decimal!r}; they must differ")
        for mark in self.currency:
            if any(c.isdigit() for c in mark) or mark in (self.thousands, self.decimal, "-", "(", ")"):
                raise ValueError(f"currency {mark!r} would take digits, separators or signs from the values")
        return self


class ColumnSpec(StrictModel):
    """One canonical column of an entity and where it comes from in the source file."""

    source: str = Field(min_length=1, max_length=128, description="Column name in the provider's file.")
    type: ColumnType = Field(description="Canonical type; values that do not parse count as invalid.")
    required: bool = Field(False, description="The column must be present in the file.")
    max_missing: Fraction | None = Field(None, description="Largest allowed share of missing values.")
    allowed_values: list[str] | None = Field(None, description="Closed set of values (string columns).")
    pattern: str | None = Field(None, max_length=200, description=(
        "Regular expression every value must match: checked by DQ on string columns, and by OCR on the text "
        "of any column (e.g. two decimals on amounts)."))
    min: float | None = Field(None, description="Smallest allowed value (integer/float columns).")
    max: float | None = Field(None, description="Largest allowed value (integer/float columns).")
    number: NumberFormat | None = Field(None, description=(
        "How the values of an integer or float column are written (separators, currency, negative styles); "
        "without it a value is plain digits with a decimal point, and one that reads two ways is refused."))
    normalize: list[Literal["trim", "upper", "lower"]] | None = Field(None, description=(
        "How a string column's values are made comparable at ingest, before any check, join or key: trim "
        "(leading and trailing blanks, the default for every string column: ' C1' and 'C1 ' are 'C1'), upper or "
        "lower (case: 'c1' is 'C1'). [] keeps values exactly as delivered. Keys that still differ only in case "
        "are reported by DQ as near-duplicates."))

    @field_validator("source")
    @classmethod
    def _printable_source(cls, value: str) -> str:
        if any(ord(ch) < 32 for ch in value):
            raise ValueError("must not contain control characters")
        return value

    @model_validator(mode="after")
    def _checks_fit_type(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ValueError(f"min/max apply to integer or float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        if self.allowed_values is not None and self.type != "string":
            raise ValueError(f"allowed_values applies to string columns, not {self.type}")
        if self.normalize and self.type != "string":
            raise ValueError(f"normalize applies to string columns, not {self.type}")
        if self.number is not None and self.type not in ("integer", "float"):
            raise ValueError(f"number applies to integer or float columns, not {self.type}")
        if self.normalize and {"upper", "lower"} <= set(self.normalize):
            raise ValueError("normalize takes upper or lower, not both")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression ({exc})") from exc
        return self


def normalization(column: ColumnSpec) -> list[str]:
    """The normalisation a column's values get at ingest: trim by default for strings, nothing for others."""
    if column.type != "string":
        return []
    return ["trim"] if column.normalize is None else list(column.normalize)


KEY_COLUMN = re.compile(r"^(customer_id|.+_id)$")


def key_columns(spec: EntitySpec) -> list[str]:
    """The columns that identify something (the primary key, customer_id, other *_id): compared as text."""
    return [name for name in spec.columns if name in spec.primary_key or KEY_COLUMN.match(name)]


class CsvOptions(StrictModel):
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)
    date_format: str = Field("%Y-%m-%d", description="strptime format of date columns.")
    header: Literal[True] = True

    @field_validator("date_format")
    @classmethod
    def _date_format_reads_dates(cls, value: str) -> str:
        """Caught here, not at ingest (where it would look like a bad delivery): the format must name a
        year, a month and a day, and read back a date it wrote."""
        from datetime import datetime

        example = date(1997, 12, 31)
        if not any(code in value for code in ("%Y", "%y")) or not any(code in value for code in ("%m", "%b", "%B")) \
                or "%d" not in value and "%j" not in value:
            raise ValueError(f"{value!r} must contain a year (%Y or %y), a month (%m, %b or %B) and a day (%d), "
                             "e.g. %Y-%m-%d, %d/%m/%Y or %Y%m%d")
        try:
            parsed = datetime.strptime(example.strftime(value), value).date()
        except Exception as exc:  # noqa: BLE001 - strptime raises re.error for a directive given twice
            raise ValueError(f"{value!r} is not a strptime date format ({type(exc).__name__}: {exc}); give each "
                             "directive once, e.g. %d/%m/%Y") from exc
        if parsed != example:
            raise ValueError(f"{value!r} does not read back the dates it writes ({example} -> {parsed})")
        return value


class OcrOptions(StrictModel):
    dpi: int = Field(300, ge=100, le=600)
    lang: str = Field("eng", pattern=r"^[a-z_]{3,16}$")
    min_confidence: float = Field(60.0, ge=0, le=100, description="Cells below this Tesseract confidence are flagged.")


class EntitySpec(StrictModel):
    """One file a provider delivers per snapshot (customers, transactions, ...)."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,126}[A-Za-z0-9._-]$|^[A-Za-z0-9]$", description=(
        "File name in the landing folder (spaces inside are fine, as spreadsheet exports name them; no "
        "folders)."))
    format: Literal["csv", "pdf"] = Field("csv", description="pdf: a scanned table, read by OCR in ingest.")
    delivery: Literal["snapshot", "incremental"] = Field("snapshot", description=(
        "snapshot: each drop is a full extract (every row as of that day); only what changed since the stored "
        "state is stored. incremental: each drop holds the rows new or changed since the previous drop; they "
        "accumulate, and with a primary_key a later delivery of a key supersedes the earlier one (a correction). "
        "Either way a run of drop D reads every row delivered by drops up to D, never a later one."))
    csv: CsvOptions = CsvOptions()
    ocr: OcrOptions = OcrOptions()
    primary_key: list[Identifier] = Field(default_factory=list, description=(
        "Columns that identify a row (checked unique and not null). Leave it out for a file without a "
        "natural key, e.g. a purchase log: its duplicates are then not checked."))
    columns: dict[Identifier, ColumnSpec] = Field(min_length=1, description=(
        "Canonical name -> where it comes from. Map what the provider has: a pipeline's optional columns "
        "that are not mapped are absent (their features are left out), not empty."))
    max_missing: Fraction | None = Field(None, description="Default missingness threshold of this entity.")
    min_rows: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _keys_and_sources(self) -> EntitySpec:
        unknown = [key for key in self.primary_key if key not in self.columns]
        if unknown:
            raise ValueError(f"primary_key names {unknown}, which are not among columns {sorted(self.columns)}")
        seen: dict[str, str] = {}
        for canonical, spec in self.columns.items():
            if spec.source in seen:
                raise ValueError(
                    f"source column {spec.source!r} is mapped twice ({seen[spec.source]} and {canonical}); "
                    "map each source column once"
                )
            seen[spec.source] = canonical
        return self


ALERT_EVENTS = ("FAILED", "BLOCKED", "NO DROP", "drift_warn", "drift_block")


class EmailAlert(StrictModel):
    """Alert mail through Airflow's SMTP provider (its SmtpNotifier and an SMTP connection)."""

    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1, description=(
        "Recipients."))
    from_email: str | None = Field(None, description="Sender; default: the connection's from_email.")
    smtp_conn_id: str = Field("smtp_default", pattern=r"^[A-Za-z0-9_.-]+$", description=(
        "Airflow connection of the SMTP server (AIRFLOW_CONN_SMTP_DEFAULT in the environment, or made in the UI; login from your secrets backend)."))


class WebhookAlert(StrictModel):
    """Alert as a JSON POST ({"text": ..., "batchops": {...}}: a Slack or Teams incoming webhook takes `text`)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", description="Where to POST; http(s) only.")
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class AlertSettings(StrictModel):
    """Who hears about a run, and of which outcomes. Off unless `on` lists some: one message per run (per try of
    its summary: a resumed run that ends again alerts again), with the reason and a link to its BatchOps tab."""

    on: list[Literal["FAILED", "BLOCKED", "NO DROP", "drift_warn", "drift_block"]] = Field(
        default_factory=list, description=("Outcomes that alert: FAILED, BLOCKED (DQ), NO DROP, drift_warn and "
                                           "drift_block (a scoring run's drift verdict)."))
    email: EmailAlert | None = None
    webhook: WebhookAlert | None = None

    @model_validator(mode="after")
    def _a_channel_for_alerts(self) -> AlertSettings:
        if self.on and self.email is None and self.webhook is None:
            raise ValueError(f"on lists {self.on} but no channel is set; add email: {{to: [...]}} or webhook: {{url: ...}}")
        return self


class RetentionSettings(StrictModel):
    """How long what grows with every run is kept (python -m batchops prune, and the daily batchops_maintenance
    DAG). Windows count days back from today by snapshot date. Never removed: the current champion model and the
    run that trained it, a run without a summary (still running, or resumable) younger than failed_run_days, and
    the run folders a rebuild needs for the rows still kept."""

    run_days: int = Field(30, ge=1, description="Run folders of COMPLETE runs.")
    failed_run_days: int = Field(90, ge=1, description="Run folders of FAILED, BLOCKED and NO DROP runs (for resuming "
                                                       "and post-mortems), and of runs that never wrote a summary.")
    feature_days: int = Field(1, ge=1, description=(
        "Feature and label rows, by the drop they were built for. Derived data: a run of a kept drop builds them "
        "again exactly as before (point in time by delivery)."))
    prediction_days: int = Field(1, ge=1, description=(
        "Prediction rows; the run folder that holds a kept date's predictions is kept as long (rebuild takes them "
        "from it)."))
    keep_training_rows: bool = Field(False, description=(
        "False: the feature and label rows a model was trained on go at the first prune after every training "
        "pipeline of the provider registered a model from that drop (they served their run; build_features of the "
        "drop builds them again exactly). True: they are kept for feature_days like the scoring rows."))
    landing_days: int | None = Field(None, ge=1, description=(
        "Landing drops (the provider's folders under BATCHOPS_DATA_DIR) of dates more than this many days back, "
        "each only once the newest verified backup holds its load (the same load_id for every entity), so a "
        "restore brings every removed drop's rows back. None keeps every drop (a rebuild starts from them)."))
    backup_before_prune: bool = Field(False, description=(
        "Prune (the batchops_maintenance DAG's and python -m batchops prune's, not --dry-run) first backs the "
        "warehouse up (python -m batchops backup, keeping BATCHOPS_BACKUP_RETENTION): with landing_days, the old "
        "drops that backup holds go the same day, without a backup job of your own."))
    models_kept: int = Field(5, ge=1, description="The newest models of each pipeline kept in the model store.")
    champions_kept: int = Field(3, ge=1, description=(
        "The current champion and the champions before it, kept besides the newest models (to roll back)."))
    history_days: int | None = Field(None, ge=1, description=(
        "Entity row versions that stopped being valid more than this many days ago (a full extract's rows that "
        "left it). None keeps them: a backfill of an older drop needs them."))
    airflow_metadata_days: int = Field(30, ge=1, description=(
        "Airflow's records (runs, task instances, XComs, logs) of this provider's DAGs, removed with airflow db "
        "clean; a run older than this cannot be cleared and resumed any more."))
    compact_free_share: Fraction = Field(0.2, description=(
        "After removing rows, prune rewrites the warehouse file when at least this share of it is free space "
        "(DuckDB reuses freed space but never shrinks its file); 0 rewrites it at every prune, 1 never."))

    @model_validator(mode="after")
    def _failed_runs_outlive_their_airflow_records(self) -> RetentionSettings:
        if self.failed_run_days < self.airflow_metadata_days:
            raise ValueError(f"failed_run_days ({self.failed_run_days}) must be at least airflow_metadata_days "
                             f"({self.airflow_metadata_days}): a failed run that Airflow can still resume needs its "
                             "run folder")
        return self


class DQDefaults(StrictModel):
    max_missing: Fraction = Field(0.05, description="Default share of missing values allowed per column.")
    max_invalid: Fraction = Field(0.0, description="Share of values allowed to fail type/range/allowed checks.")
    min_rows: int = Field(1, ge=0, description=(
        "Each entity must have at least this many rows; 0 accepts an empty file (a quiet day of an incremental "
        "feed)."))
    max_ocr_flagged: Fraction = Field(0.01, description="Share of OCR cells allowed to be low-confidence or invalid.")
    max_orphan_rows: Fraction = Field(0.0, description=(
        "Share of an entity's rows allowed to name a customer_id that the drop's customer file does not have. "
        "Such rows are loaded but belong to no customer's features, labels or scores."))
    max_future_dates: Fraction = Field(0.0, description=(
        "Share of a date column's values allowed to lie after the snapshot date (a date from the future)."))
    delivery_gaps: Literal["fail", "warn"] = Field("fail", description=(
        "A drop of an incremental entity whose previous drop (by the provider's schedule) was never loaded: "
        "the days in between are missing from its history. fail blocks the run; warn reports it and goes on."))
    min_snapshot_share: Fraction = Field(0.1, description=(
        "A full extract (delivery: snapshot) must hold at least this share of the rows of the entity's previous "
        "drop. Fewer is what a provider sending only each day's new rows looks like (declare delivery: "
        "incremental), or an extract cut short: stored as a full extract, every row missing from it would leave "
        "the history the features read. 0 switches the check off; an empty file is min_rows' to judge."))
    near_duplicate_keys: Literal["fail", "warn"] = Field("fail", description=(
        "Key values that differ only in letter case (C0000001 and c0000001) after normalisation: fail the DQ "
        "gate, or only report them. Declare normalize: [trim, upper] on the column to treat them as one."))


class ProviderConfig(StrictModel):
    """A data provider: where its files land, how to read them, how strict DQ is."""

    provider_id: DagPart
    description: str = ""
    owner: str = Field(min_length=1)
    schedule: str | None = Field("@daily", description=f"None, a cron expression or one of {SCHEDULE_PRESETS}.")
    start_date: date = Field(date(2026, 1, 1), description=(
        "First snapshot a *scheduled* run may process. Manual runs and backfills take any date."))
    retries: int = Field(1, ge=0, le=10)
    queue: str = Field("default", pattern=r"^[a-z0-9_-]{1,64}$", description=(
        "Celery queue of every task of this provider's DAGs. A worker consumes the queues it names "
        "(`airflow celery worker --queues shard_a`) and keeps those providers' warehouses on its own disk; "
        "`default` is the queue a worker consumes when it names none. See docs/deploy.md, Scaling out."))
    pipelines: list[DagPart] = Field(min_length=1, description=(
        "Pipelines to run for this provider: a list of ids, or a mapping id -> overrides of that pipeline's "
        "settings (label, model, guardrails, wait_for_model) for this provider only."))
    pipeline_overrides: dict[DagPart, PipelineOverride] = Field(default_factory=dict, description=(
        "Filled from the mapping form of `pipelines`."))
    landing_path: str = Field(
        "{provider_id}/{snapshot_date}",
        description="Folder of a snapshot's files, relative to BATCHOPS_DATA_DIR.",
    )
    ready_marker: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", description=(
        "File the provider writes into the landing folder after an upload is complete (e.g. _SUCCESS); "
        "ingest waits for it. Use it when uploads are not atomic."))
    landing_timeout_minutes: int = Field(720, ge=1, le=10080, description=(
        "How long a scheduled run's wait_for_drop waits for the snapshot's files (and ready_marker) before the "
        "run ends NO DROP (its tasks skipped, nothing failed). Manual runs never wait: a missing file fails "
        "ingest at once with the expected path."))
    landing_poke_seconds: int = Field(300, ge=5, le=86400, description=(
        "How often wait_for_drop looks for the files (reschedule mode: no worker slot is held in between)."))
    landing_wait_retries: int = Field(3, ge=0, le=20, description=(
        "How often wait_for_drop is retried after an error of its own (not a missing drop): e.g. the Airflow API "
        "server or scheduler restarting while runs wait. A retry keeps waiting within landing_timeout_minutes."))
    landing_wait_retry_seconds: int = Field(60, ge=5, le=3600, description="Pause before such a retry.")
    landing_settle_seconds: float = Field(2.0, ge=0, le=600, description=(
        "A landing file modified less than this long ago is watched this long; if it still changes it is "
        "treated as an upload in progress and ingest retries later."))
    tags: list[Tag] = []
    access_roles: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = Field(default_factory=list, description=(
        "Airflow (FAB) roles that read and run this provider's DAGs and BatchOps pages, and no other provider's "
        "(DAG access_control; create them with `python -m batchops sync-roles`). Ignored by other auth managers."))
    dq: DQDefaults = DQDefaults()
    retention: RetentionSettings = RetentionSettings()
    alerts: AlertSettings = AlertSettings()
    entities: dict[Identifier, EntitySpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _pipelines_mapping(cls, data: Any) -> Any:
        """`pipelines: {propensity_model: {label: {horizon_days: 90}}}` = the list of ids plus overrides."""
        if isinstance(data, dict) and isinstance(data.get("pipelines"), dict):
            mapping = data["pipelines"]
            data = {**data, "pipelines": list(mapping),
                    "pipeline_overrides": {key: value for key, value in mapping.items() if value}}
        return data

    @field_validator("schedule")
    @classmethod
    def _schedule_airflow_accepts(cls, value: str | None) -> str | None:
        if value is None or value in SCHEDULE_PRESETS:
            return value
        from croniter import croniter  # what Airflow's cron timetables use

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a cron expression (e.g. '0 6 * * *') nor one of "
                             f"{list(SCHEDULE_PRESETS)}")
        return value

    @field_validator("entities")
    @classmethod
    def _entities_are_not_internal_tables(cls, value: dict[str, EntitySpec]) -> dict[str, EntitySpec]:
        taken = sorted(INTERNAL_TABLES & set(value))
        if taken:
            raise ValueError(f"entity name(s) {taken} are tables BatchOps keeps itself ({sorted(INTERNAL_TABLES)}); "
                             "rename the entity")
        return value

    @model_validator(mode="after")
    def _overrides_name_listed_pipelines(self) -> ProviderConfig:
        unknown = sorted(set(self.pipeline_overrides) - set(self.pipelines))
        if unknown:
            raise ValueError(f"pipeline_overrides for {unknown}, which are not in pipelines {self.pipelines}")
        return self

    @field_validator("landing_path")
    @classmethod
    def _safe_landing_path(cls, value: str) -> str:
        if "{snapshot_date}" not in value:
            raise ValueError("must contain {snapshot_date} so each snapshot has its own folder")
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a relative path inside BATCHOPS_DATA_DIR (no leading / and no ..)")
        try:
            value.format(provider_id="p", snapshot_date="2026-01-01")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{provider_id}} and {{snapshot_date}} may be used ({exc})") from exc
        return value

    def landing_dir(self, data_dir: Path, snapshot_date: date) -> Path:
        relative = self.landing_path.format(provider_id=self.provider_id, snapshot_date=snapshot_date.isoformat())
        return data_dir / relative

    def missing_landing_files(self, data_dir: Path, snapshot_date: date) -> list[str]:
        """The snapshot's files (and ready_marker) not in the landing folder yet, as paths."""
        folder = self.landing_dir(data_dir, snapshot_date)
        names = [spec.file for spec in self.entities.values()] + ([self.ready_marker] if self.ready_marker else [])
        return [str(folder / name) for name in names if not (folder / name).is_file()]

    def missing_threshold(self, entity: str, column: str) -> float:
        spec = self.entities[entity]
        column_spec = spec.columns[column]
        for threshold in (column_spec.max_missing, spec.max_missing):
            if threshold is not None:
                return threshold
        return self.dq.max_missing




ProviderConfig.model_rebuild()
