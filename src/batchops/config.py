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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchops.errors import ConfigError
from batchops.yaml_loader import read_yaml_file

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
DEFAULTS_FILE_NAME = "_defaults.yaml"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ColumnType = Literal["string", "integer", "float", "date", "boolean"]
StageName = Literal[
    "plan", "ingest", "validate", "dq_gate", "load", "build_features", "train", "wait_for_model", "score",
    "summarize",
]

# A stage may only run after the stages it reads from.
STAGE_PREREQUISITES: dict[str, tuple[str, ...]] = {
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


class OcrOptions(StrictModel):
    dpi: int = Field(300, ge=100, le=600)
    lang: str = Field("eng", pattern=r"^[a-z_]{3,16}$")
    min_confidence: float = Field(60.0, ge=0, le=100, description="Cells below this Tesseract confidence are flagged.")


class EntitySpec(StrictModel):
    """One file a provider delivers per snapshot (customers, transactions, ...)."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="File name in the landing folder.")
    format: Literal["csv", "pdf"] = Field("csv", description="pdf: a scanned table, read by OCR in ingest.")
    csv: CsvOptions = CsvOptions()
    ocr: OcrOptions = OcrOptions()
    primary_key: list[Identifier] = Field(min_length=1)
    columns: dict[Identifier, ColumnSpec] = Field(min_length=1)
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

    provider_id: Identifier
    description: str = ""
    owner: str = Field(min_length=1)
    schedule: str | None = "@daily"
    start_date: date = date(2026, 1, 1)
    retries: int = Field(1, ge=0, le=10)
    pipelines: list[Identifier] = Field(min_length=1)
    landing_path: str = Field(
        "{provider_id}/{snapshot_date}",
        description="Folder of a snapshot's files, relative to BATCHOPS_DATA_DIR.",
    )
    ready_marker: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", description=(
        "File the provider writes into the landing folder after an upload is complete (e.g. _SUCCESS); "
        "ingest waits for it. Use it when uploads are not atomic."))
    landing_settle_seconds: float = Field(2.0, ge=0, le=600, description=(
        "A landing file modified less than this long ago is watched this long; if it still changes it is "
        "treated as an upload in progress and ingest retries later."))
    tags: list[str] = []
    dq: DQDefaults = DQDefaults()
    entities: dict[Identifier, EntitySpec] = Field(min_length=1)

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


class LabelSettings(StrictModel):
    horizon_days: int = Field(30, ge=1, le=366, description="Label: any transaction in [T, T + horizon).")
    training_snapshots: int = Field(1, ge=0, le=12, description="Earlier snapshots stacked for training.")
    snapshot_step_days: int = Field(30, ge=1, le=366)


class ModelSettings(StrictModel):
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=10)
    class_weight: Literal["balanced"] | None = None
    test_size: float = Field(0.25, gt=0.05, lt=0.9)
    random_state: int = 42
    max_train_rows: int = Field(500_000, ge=1000, description=(
        "Fit on a stratified sample of at most this many rows: LogisticRegression has converged long before, "
        "and it keeps train time and memory flat at millions of customers."))


class Guardrails(StrictModel):
    min_roc_auc: Fraction = 0.6
    min_train_rows: int = Field(100, ge=1)
    max_auc_drop: Fraction = Field(0.02, description="Largest AUC loss vs the champion on the same holdout.")


class SensorSettings(StrictModel):
    poke_interval_seconds: int = Field(30, ge=1)
    timeout_seconds: int = Field(600, ge=1)
    mode: Literal["poke", "reschedule"] = "reschedule"


class PipelineSpec(StrictModel):
    """An ordered list of known stages and their settings; the factory turns it into a task graph."""

    pipeline_id: Identifier
    description: str = ""
    stages: list[StageName] = Field(min_length=1)
    requires: dict[Identifier, list[Identifier]] = Field(
        default_factory=dict, description="Canonical columns each provider must map for this pipeline."
    )
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
        return self

    @property
    def model_pipeline(self) -> str:
        """The pipeline whose approved models this one scores with."""
        return self.model_source_pipeline or self.pipeline_id


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

    def dag_pairs(self) -> list[tuple[ProviderConfig, PipelineSpec]]:
        return [
            (provider, self.pipelines[pipeline_id])
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
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against the README's config reference"
        elif problem["type"] == "missing":
            message = "required key is missing"
        elif problem["type"] == "string_pattern_mismatch" and "pattern" in problem.get("ctx", {}):
            message = f"{problem.get('input')!r} must match {problem['ctx']['pattern']} (lowercase letters, digits, _)"
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
    if spec.features:
        for index, sql_name in enumerate(spec.features.sql):
            _check_sql_file(path, f"features.sql.{index}", sql_name, sql_dir)
    return spec


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
        for entity, columns in pipelines[pipeline_id].requires.items():
            if entity not in provider.entities:
                issues.append(ConfigIssue(str(path), f"entities.{entity}",
                                          f"pipeline {pipeline_id} needs entity {entity!r}; add it"))
                continue
            missing = [c for c in columns if c not in provider.entities[entity].columns]
            if missing:
                issues.append(ConfigIssue(str(path), f"entities.{entity}.columns",
                                          f"pipeline {pipeline_id} needs canonical columns {missing}; map them"))
    return issues


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
    for path in sorted(pipelines_dir.glob("*.yaml")):
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
    for path in sorted(config_dir.glob("*.yaml")):
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
        if problems:
            for problem in problems:
                record(path, problem)
            continue
        usable = [p for p in provider.pipelines if p in pipelines]
        if usable != provider.pipelines:
            provider = provider.model_copy(update={"pipelines": usable})
        providers[provider.provider_id] = provider
        provider_files[provider.provider_id] = path
    return ConfigSet(providers, pipelines, issues, provider_files, pipeline_files,
                     defaults_path if defaults_path.exists() else None, broken)


def effective_config(provider: ProviderConfig, pipeline: PipelineSpec) -> dict[str, Any]:
    """The merged provider config and pipeline spec of one DAG, as plain JSON-able data."""
    return {"provider": provider.model_dump(mode="json"), "pipeline": pipeline.model_dump(mode="json")}


_SAFE_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    """A lowercase identifier-safe version of a file name (for placeholder DAG ids)."""
    return _SAFE_SLUG.sub("_", text.lower()).strip("_") or "unnamed"
