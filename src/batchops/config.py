"""Provider and pipeline configs: typed models, loading, merging of shared defaults, validation.

A provider file (include/configs/<provider>.yaml) is deep-merged over include/configs/_defaults.yaml
and then validated; a pipeline file (include/pipelines/<pipeline>.yaml) is validated as is. Every
problem becomes a ConfigIssue (file, field path, reason); one broken file never hides the others.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from batchops.errors import ConfigError
from batchops.yaml_loader import read_yaml_file

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
DEFAULTS_FILE_NAME = "_defaults.yaml"
CONFIG_SUFFIXES = (".yaml", ".yml")
# Tables BatchOps itself keeps in every warehouse: an entity may not take one of these names.
INTERNAL_TABLES = frozenset({"features", "labels", "predictions", "model_registry", "load_audit", "rejects",
                             "reject_scans", "scored"})
TAG_MAX_LENGTH = 100  # Airflow refuses a longer tag, and with it every DAG of the file
SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ColumnType = Literal["string", "integer", "float", "date", "boolean"]
StageName = Literal[
    "plan", "wait_for_drop", "ingest", "validate", "dq_gate", "load", "build_features", "train", "wait_for_model", "score",
    "summarize",
]

# A stage may only run after the stages it reads from.
STAGE_PREREQUISITES: dict[str, tuple[str, ...]] = {
    "wait_for_drop": ("plan",),
    "ingest": ("plan",),
    "validate": ("ingest",),
    "dq_gate": ("validate",),
    "load": ("dq_gate",),
    "build_features": ("load",),
    "train": ("build_features",),
    "score": ("build_features", "wait_for_model"),
    "summarize": ("plan",),
}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_double_underscore(value: str) -> str:
    """DAG ids are <provider_id>__<pipeline_id>: a '__' inside either would let two pairs share one id."""
    if "__" in value:
        raise ValueError(f"{value!r} must not contain '__' (it separates provider and pipeline in DAG ids)")
    return value


DagPart = Annotated[str, Field(pattern=IDENTIFIER_PATTERN), AfterValidator(_no_double_underscore)]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX_LENGTH)]


# ---------------------------------------------------------------- provider configs


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
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression ({exc})") from exc
        return self


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
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a strptime date format ({exc})") from exc
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


class DQDefaults(StrictModel):
    max_missing: Fraction = Field(0.05, description="Default share of missing values allowed per column.")
    max_invalid: Fraction = Field(0.0, description="Share of values allowed to fail type/range/allowed checks.")
    min_rows: int = Field(1, ge=0, description="Each entity must have at least this many rows.")
    max_ocr_flagged: Fraction = Field(0.01, description="Share of OCR cells allowed to be low-confidence or invalid.")


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
    landing_settle_seconds: float = Field(2.0, ge=0, le=600, description=(
        "A landing file modified less than this long ago is watched this long; if it still changes it is "
        "treated as an upload in progress and ingest retries later."))
    tags: list[Tag] = []
    dq: DQDefaults = DQDefaults()
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


# ---------------------------------------------------------------- pipeline specs


class FeatureSettings(StrictModel):
    sql: list[str] = Field(min_length=1, description="SQL files in include/sql/, run in order.")
    columns: list[Identifier] = Field(min_length=1, description="Numeric feature columns the model uses.")
    categorical: list[Identifier] = Field(default_factory=list, description="Categorical feature columns.")
    needs: dict[Identifier, list[str]] = Field(default_factory=dict, description=(
        "feature -> the canonical columns ('entity.column') it is computed from. A feature whose columns a "
        "provider does not map (nor derives) is left out of that provider's model, and metrics.json says so."))

    @model_validator(mode="after")
    def _needs_name_features(self) -> FeatureSettings:
        unknown = sorted(set(self.needs) - set(self.columns) - set(self.categorical))
        if unknown:
            raise ValueError(f"needs names {unknown}, which are not among columns or categorical")
        for feature, sources in self.needs.items():
            bad = [source for source in sources if not re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", source)]
            if bad:
                raise ValueError(f"needs.{feature}: {bad} must be written entity.column")
        return self


class DerivedEntity(StrictModel):
    """An entity a provider may leave out: load derives it from the entities it did deliver."""

    sql: str = Field(description="SQL file in include/sql/ that rebuilds the entity's rows of the snapshot.")
    provides: list[Identifier] = Field(min_length=1, description="Canonical columns the SQL fills.")


class LabelSettings(StrictModel):
    horizon_days: int = Field(30, ge=1, le=366, description="Label: any transaction in [T, T + horizon).")
    training_snapshots: int = Field(1, ge=0, le=12, description="Earlier snapshots stacked for training.")
    snapshot_step_days: int = Field(30, ge=1, le=366)


class ModelSettings(StrictModel):
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=10)
    solver: Literal["newton-cholesky", "lbfgs"] = Field("newton-cholesky", description=(
        "LogisticRegression's solver. newton-cholesky converges in about 5 Newton steps on our few dozen "
        "features (M: 0.17 s a fit against lbfgs's 43 iterations in 0.93 s, the same AUC to 0.0001); lbfgs "
        "suits a model with thousands of one-hot columns, where the Hessian grows with their square."))
    class_weight: Literal["balanced"] | None = None
    test_size: float = Field(0.25, gt=0.05, lt=0.9)
    random_state: int = 42
    max_train_rows: int = Field(200_000, ge=1000, description=(
        "Fit on a stratified sample of at most this many rows, and judge the holdout and out-of-time window on "
        "samples of at most as many: LogisticRegression has converged long before (M: the same AUC to 0.0001 "
        "as with 500k), the AUC's standard error is about 0.001, and train time and memory stay flat at "
        "millions of customers."))
    calibration: Literal["none", "sigmoid", "isotonic"] = Field("none", description=(
        "Calibrate the probabilities (scikit-learn CalibratedClassifierCV, 3 folds): sigmoid (Platt) or "
        "isotonic; none keeps the logistic regression's own."))


class DriftGuardrail(StrictModel):
    """Checked before scoring publishes: the snapshot's features against the model's training data."""

    max_psi: float = Field(0.25, gt=0, description="Largest population stability index of any feature.")
    max_null_change: Fraction = Field(0.10, description="Largest change of a feature's share of nulls.")
    action: Literal["block", "warn"] = Field("warn", description=(
        "block: publish nothing and fail the score task, naming the features; warn: publish and say so (in "
        "run_summary.md, the run tab, the BatchOps page and logs.jsonl). warn by default: features that trend "
        "with time (tenure, recency of a closed cohort) move between the training windows and the scoring date "
        "by construction, and a block would stop such a provider's every scoring run."))


class Guardrails(StrictModel):
    min_roc_auc: Fraction = 0.6
    min_train_rows: int = Field(100, ge=1)
    max_auc_drop: Fraction = Field(0.02, description="Largest AUC loss vs the champion on the same window.")
    promote_on: Literal["out_of_time", "holdout"] = Field("out_of_time", description=(
        "Which ROC AUC the thresholds and the champion comparison use: out_of_time (the latest labelled "
        "window, scored by a model fitted on the windows before it) or holdout (customers held out of the "
        "training windows). out_of_time falls back to holdout when there is only one window."))
    drift: DriftGuardrail = DriftGuardrail()


class SensorSettings(StrictModel):
    poke_interval_seconds: int = Field(30, ge=1)
    timeout_seconds: int = Field(600, ge=1)
    mode: Literal["poke", "reschedule"] = "reschedule"


class PipelineSpec(StrictModel):
    """An ordered list of known stages and their settings; the factory turns it into a task graph."""

    pipeline_id: DagPart
    description: str = ""
    stages: list[StageName] = Field(min_length=1)
    requires: dict[Identifier, list[Identifier]] = Field(
        default_factory=dict, description="Canonical columns each provider must map for this pipeline."
    )
    optional: dict[Identifier, dict[Identifier, ColumnType]] = Field(default_factory=dict, description=(
        "Canonical columns (and their types) the pipeline uses when a provider maps them; when it does not, "
        "they are read as absent (NULL) and the features that need them are left out."))
    derived_entities: dict[Identifier, DerivedEntity] = Field(default_factory=dict, description=(
        "Entities a provider may leave out, and the SQL that derives them at load."))
    features: FeatureSettings | None = None
    label: LabelSettings = LabelSettings()
    model: ModelSettings = ModelSettings()
    guardrails: Guardrails = Guardrails()
    wait_for_model: SensorSettings = SensorSettings()
    model_source_pipeline: Identifier | None = Field(
        None, description="Score with the approved models of this pipeline instead of this one's."
    )

    @model_validator(mode="after")
    def _stage_order(self) -> PipelineSpec:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("a stage is listed twice")
        if self.stages[0] != "plan":
            raise ValueError("the first stage must be plan")
        if "summarize" in self.stages and self.stages[-1] != "summarize":
            raise ValueError("summarize must be the last stage")
        for position, stage in enumerate(self.stages):
            earlier = set(self.stages[:position])
            missing = [need for need in STAGE_PREREQUISITES.get(stage, ()) if need not in earlier]
            if missing:
                raise ValueError(f"stage {stage} needs {missing} before it")
        if "wait_for_model" in self.stages and "train" not in self.stages and not self.model_source_pipeline:
            raise ValueError("wait_for_model without train needs model_source_pipeline (whose models to use)")
        if "build_features" in self.stages and self.features is None:
            raise ValueError("build_features needs a features section (sql files and feature columns)")
        for entity, derived in self.derived_entities.items():
            missing = [c for c in self.requires.get(entity, []) if c not in derived.provides]
            if missing:
                raise ValueError(f"derived_entities.{entity} must provide the required columns {missing}")
        return self

    @property
    def model_pipeline(self) -> str:
        """The pipeline whose approved models this one scores with."""
        return self.model_source_pipeline or self.pipeline_id


class PipelineOverride(StrictModel):
    """What a provider may change of a pipeline for itself; validated again as part of the pipeline."""

    label: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    guardrails: dict[str, Any] | None = None
    wait_for_model: dict[str, Any] | None = None


ProviderConfig.model_rebuild()


@dataclass(frozen=True)
class FeatureSet:
    """The features one provider's model uses under one pipeline, and the optional ones it lacks."""

    numeric: list[str]
    categorical: list[str]
    absent: dict[str, list[str]]  # feature -> the canonical columns it needs that the provider lacks

    @property
    def used(self) -> list[str]:
        return self.numeric + self.categorical


def available_columns(provider: ProviderConfig, pipeline: PipelineSpec) -> set[str]:
    """'entity.column' of every canonical column the provider maps or a derived entity provides."""
    mapped = {f"{entity}.{column}" for entity, spec in provider.entities.items() for column in spec.columns}
    derived = {f"{entity}.{column}" for entity, spec in pipeline.derived_entities.items()
               if entity not in provider.entities for column in spec.provides}
    return mapped | derived


def feature_set(provider: ProviderConfig, pipeline: PipelineSpec) -> FeatureSet:
    """Features whose columns the provider has; the rest are reported absent, never trained on as blanks."""
    settings = pipeline.features
    if settings is None:
        return FeatureSet([], [], {})
    have = available_columns(provider, pipeline)
    absent = {feature: [c for c in needed if c not in have] for feature, needed in settings.needs.items()}
    absent = {feature: missing for feature, missing in absent.items() if missing}
    return FeatureSet([f for f in settings.columns if f not in absent],
                      [f for f in settings.categorical if f not in absent], absent)


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class ConfigSet:
    """Everything the factory needs: valid configs, per-file issues, and file hashes for plan.json."""

    providers: dict[str, ProviderConfig]
    pipelines: dict[str, PipelineSpec]
    issues: list[ConfigIssue]
    provider_files: dict[str, Path]
    pipeline_files: dict[str, Path]
    defaults_file: Path | None
    broken_files: dict[str, list[ConfigIssue]] = field(default_factory=dict)
    # (provider_id, pipeline_id) -> the pipeline with that provider's overrides applied
    effective: dict[tuple[str, str], PipelineSpec] = field(default_factory=dict)

    def pipeline_for(self, provider_id: str, pipeline_id: str) -> PipelineSpec:
        """The pipeline as it runs for this provider (its overrides applied)."""
        return self.effective.get((provider_id, pipeline_id)) or self.pipelines[pipeline_id]

    def dag_pairs(self) -> list[tuple[ProviderConfig, PipelineSpec]]:
        return [
            (provider, self.pipeline_for(provider.provider_id, pipeline_id))
            for provider in self.providers.values()
            for pipeline_id in provider.pipelines
        ]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins; nested mappings merge key by key; lists are replaced, not appended."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _issues_from_validation(file: Path, error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for problem in error.errors():
        parts = [str(part) for part in problem["loc"]]
        overriding = parts[:1] == ["pipeline_overrides"]
        if overriding:  # the user wrote these under `pipelines:`
            parts[0] = "pipelines"
        location = ".".join(parts) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden" and overriding and len(parts) == 3:
            message = (f"unknown key: a provider may override only {sorted(PipelineOverride.model_fields)} of a "
                       "pipeline; copy the pipeline file to change anything else")
        elif problem["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against the README's config reference"
        elif problem["type"] == "missing":
            message = "required key is missing"
        elif problem["type"] == "string_pattern_mismatch" and "pattern" in problem.get("ctx", {}):
            hint = " (lowercase letters, digits, _)" if problem["ctx"]["pattern"] == IDENTIFIER_PATTERN else ""
            message = f"{problem.get('input')!r} must match {problem['ctx']['pattern']}{hint}"
        issues.append(ConfigIssue(str(file), location, message))
    return issues


def load_pipeline_file(path: Path, sql_dir: Path) -> PipelineSpec:
    """Read and validate one pipeline file; SQL files must exist inside sql_dir."""
    raw = read_yaml_file(path)
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        first = _issues_from_validation(path, exc)
        raise ConfigError(first[0].file, first[0].field, "; ".join(i.reason for i in first)) from exc
    for field_path, sql_name in pipeline_sql_files(spec).items():
        _check_sql_file(path, field_path, sql_name, sql_dir)
    return spec


def pipeline_sql_files(spec: PipelineSpec) -> dict[str, str]:
    """Every SQL file a pipeline runs, by the field that names it."""
    files = {f"features.sql.{index}": name for index, name in enumerate(spec.features.sql if spec.features else [])}
    files.update({f"derived_entities.{entity}.sql": derived.sql for entity, derived in spec.derived_entities.items()})
    return files


def _check_sql_file(config_file: Path, field_path: str, sql_name: str, sql_dir: Path) -> None:
    candidate = (sql_dir / sql_name).resolve()
    if not candidate.is_relative_to(sql_dir.resolve()) or not sql_name.endswith(".sql"):
        raise ConfigError(str(config_file), field_path, f"{sql_name!r} must be a .sql file inside {sql_dir}")
    if not candidate.is_file():
        raise ConfigError(str(config_file), field_path, f"{sql_name!r} does not exist in {sql_dir}")


def load_provider_file(path: Path, defaults: dict[str, Any]) -> ProviderConfig:
    """Read one provider file, merge it over the shared defaults and validate it."""
    raw = read_yaml_file(path)
    try:
        return ProviderConfig.model_validate(deep_merge(defaults, raw))
    except ValidationError as exc:
        issues = _issues_from_validation(path, exc)
        raise ConfigError(issues[0].file, issues[0].field, "; ".join(
            i.reason if i.field == issues[0].field else f"{i.field}: {i.reason}" for i in issues
        )) from exc


def _check_provider_against_pipelines(
    path: Path, provider: ProviderConfig, pipelines: dict[str, PipelineSpec], broken_pipelines: set[str]
) -> list[ConfigIssue]:
    issues = []
    for index, pipeline_id in enumerate(provider.pipelines):
        if pipeline_id in broken_pipelines:
            continue  # reported on the pipeline file itself
        if pipeline_id not in pipelines:
            issues.append(ConfigIssue(str(path), f"pipelines.{index}",
                                      f"unknown pipeline {pipeline_id!r}; known: {sorted(pipelines)}"))
            continue
        pipeline = pipelines[pipeline_id]
        for entity, columns in pipeline.requires.items():
            if entity not in provider.entities:
                if entity in pipeline.derived_entities:
                    continue  # derived at load from the entities the provider delivers
                issues.append(ConfigIssue(str(path), f"entities.{entity}",
                                          f"pipeline {pipeline_id} needs entity {entity!r}; add it"))
                continue
            missing = [c for c in columns if c not in provider.entities[entity].columns]
            if missing:
                issues.append(ConfigIssue(str(path), f"entities.{entity}.columns",
                                          f"pipeline {pipeline_id} needs canonical columns {missing}; map them"))
        for entity, columns in pipeline.optional.items():
            mapped = provider.entities.get(entity)
            for column, expected in columns.items():
                if mapped is not None and column in mapped.columns and mapped.columns[column].type != expected:
                    issues.append(ConfigIssue(
                        str(path), f"entities.{entity}.columns.{column}.type",
                        f"pipeline {pipeline_id} reads {column} as {expected}, not {mapped.columns[column].type}"))
    return issues


def _effective_pipeline(path: Path, provider: ProviderConfig, pipeline_id: str,
                        pipelines: dict[str, PipelineSpec]) -> PipelineSpec:
    """The pipeline with the provider's overrides applied; a scoring pipeline takes the label and feature
    columns of the pipeline whose models it scores with (for this provider), so the two never disagree."""
    def overridden(target_id: str) -> PipelineSpec:
        base = pipelines[target_id]
        override = provider.pipeline_overrides.get(target_id)
        if override is None:
            return base
        merged = deep_merge(base.model_dump(), override.model_dump(exclude_none=True))
        try:
            return PipelineSpec.model_validate(merged)
        except ValidationError as exc:
            issue = _issues_from_validation(path, exc)[0]
            raise ConfigError(str(path), f"pipelines.{target_id}.{issue.field}", issue.reason) from exc

    spec = overridden(pipeline_id)
    source_id = spec.model_source_pipeline
    if source_id and source_id != pipeline_id and source_id in pipelines and spec.features is not None:
        source = overridden(source_id)
        if source.features is not None:
            spec = spec.model_copy(update={"label": source.label, "features": spec.features.model_copy(update={
                "columns": source.features.columns, "categorical": source.features.categorical,
                "needs": source.features.needs})})
    return spec


def load_config_set(config_dir: Path, pipelines_dir: Path, sql_dir: Path) -> ConfigSet:
    """Load every provider and pipeline file; invalid files become issues, never exceptions."""
    issues: list[ConfigIssue] = []
    broken: dict[str, list[ConfigIssue]] = {}

    def record(file: Path, problem: ConfigIssue) -> None:
        issues.append(problem)
        broken.setdefault(str(file), []).append(problem)

    pipelines: dict[str, PipelineSpec] = {}
    pipeline_files: dict[str, Path] = {}
    broken_pipeline_ids: set[str] = set()
    for path in config_files(pipelines_dir):
        try:
            spec = load_pipeline_file(path, sql_dir)
        except ConfigError as exc:
            record(path, ConfigIssue(exc.file, exc.field, exc.reason))
            broken_pipeline_ids.add(path.stem)
            continue
        if spec.pipeline_id in pipelines:
            record(path, ConfigIssue(str(path), "pipeline_id",
                                     f"{spec.pipeline_id!r} is also defined in {pipeline_files[spec.pipeline_id]}"))
            continue
        pipelines[spec.pipeline_id] = spec
        pipeline_files[spec.pipeline_id] = path

    defaults_path = config_dir / DEFAULTS_FILE_NAME
    defaults: dict[str, Any] = {}
    if defaults_path.exists():
        try:
            defaults = read_yaml_file(defaults_path)
        except ConfigError as exc:
            # Without defaults every provider would fail with confusing messages: report the root cause.
            record(defaults_path, ConfigIssue(exc.file, exc.field, exc.reason))
            return ConfigSet({}, pipelines, issues, {}, pipeline_files, defaults_path, broken)

    providers: dict[str, ProviderConfig] = {}
    provider_files: dict[str, Path] = {}
    effective: dict[tuple[str, str], PipelineSpec] = {}
    for path in config_files(config_dir):
        if path.name.startswith("_"):
            continue
        try:
            provider = load_provider_file(path, defaults)
        except ConfigError as exc:
            record(path, ConfigIssue(exc.file, exc.field, exc.reason))
            continue
        if provider.provider_id in providers:
            record(path, ConfigIssue(str(path), "provider_id",
                                     f"{provider.provider_id!r} is already defined in "
                                     f"{provider_files[provider.provider_id]}; provider ids must be unique"))
            continue
        problems = _check_provider_against_pipelines(path, provider, pipelines, broken_pipeline_ids)
        resolved: dict[tuple[str, str], PipelineSpec] = {}
        for pipeline_id in (p for p in provider.pipelines if p in pipelines):
            try:
                resolved[(provider.provider_id, pipeline_id)] = _effective_pipeline(path, provider, pipeline_id,
                                                                                    pipelines)
            except ConfigError as exc:
                problems.append(ConfigIssue(exc.file, exc.field, exc.reason))
        if problems:
            for problem in problems:
                record(path, problem)
            continue
        effective.update(resolved)
        usable = [p for p in provider.pipelines if p in pipelines]
        if usable != provider.pipelines:
            provider = provider.model_copy(update={"pipelines": usable})
        providers[provider.provider_id] = provider
        provider_files[provider.provider_id] = path
    return ConfigSet(providers, pipelines, issues, provider_files, pipeline_files,
                     defaults_path if defaults_path.exists() else None, broken, effective)


def config_files(folder: Path) -> list[Path]:
    """Every YAML file of a config folder: *.yaml and *.yml, in any letter case."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in CONFIG_SUFFIXES and path.is_file())


def effective_config(provider: ProviderConfig, pipeline: PipelineSpec) -> dict[str, Any]:
    """The merged provider config and pipeline spec of one DAG, as plain JSON-able data."""
    return {"provider": provider.model_dump(mode="json"), "pipeline": pipeline.model_dump(mode="json")}


_SAFE_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    """A lowercase identifier-safe version of a file name (for placeholder DAG ids)."""
    return _SAFE_SLUG.sub("_", text.lower()).strip("_") or "unnamed"
