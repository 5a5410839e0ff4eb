"""Loading every config file: defaults merged under providers, pipelines resolved per provider, and every
problem as a ConfigIssue (file, field path, reason); one broken file never hides the others."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from batchops.config.common import CONFIG_SUFFIXES, DEFAULTS_FILE_NAME, IDENTIFIER_PATTERN
from batchops.config.pipeline import PipelineOverride, PipelineSpec
from batchops.config.provider import ProviderConfig, key_columns
from batchops.errors import ConfigError
from batchops.yaml_loader import read_yaml_file


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
    # settings that work but are probably not what the author meant (validate prints them, exit 0)
    warnings: list[ConfigIssue] = field(default_factory=list)

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


def _override_issues(path: Path, provider: ProviderConfig, pipeline_id: str, base: PipelineSpec) -> list[ConfigIssue]:
    """Overrides that would validate and then do nothing: refused, naming what would take effect instead."""
    override = provider.pipeline_overrides.get(pipeline_id)
    if override is None:
        return []
    field_path = f"pipelines.{pipeline_id}"
    issues = []
    source = base.model_source_pipeline
    if override.label is not None and source and source != pipeline_id:
        issues.append(ConfigIssue(str(path), f"{field_path}.label", (
            f"{pipeline_id} scores with {source}'s models and takes its label from {source}, so this override "
            f"would change nothing; override label under {source} instead")))
    if "train" not in base.stages:
        if override.model is not None:
            issues.append(ConfigIssue(str(path), f"{field_path}.model",
                                      f"{pipeline_id} has no train stage, so model settings would change nothing"))
        unused = sorted(set(override.guardrails or {}) - {"drift"})
        if unused:
            issues.append(ConfigIssue(str(path), f"{field_path}.guardrails", (
                f"{unused} judge a training run; {pipeline_id} has no train stage (only guardrails.drift applies)")))
    if override.wait_for_model is not None and "wait_for_model" not in base.stages:
        issues.append(ConfigIssue(str(path), f"{field_path}.wait_for_model",
                                  f"{pipeline_id} has no wait_for_model stage, so this would change nothing"))
    return issues


def _effective_pipelines(path: Path, provider: ProviderConfig, pipelines: dict[str, PipelineSpec]
                         ) -> tuple[dict[str, PipelineSpec], list[ConfigIssue]]:
    """Every listed pipeline with the provider's overrides applied (each override checked once); a scoring
    pipeline takes the label and feature columns of the pipeline whose models it scores with (for this
    provider), so the two never disagree."""
    overridden: dict[str, PipelineSpec | None] = {}
    issues: list[ConfigIssue] = []

    def resolve(target_id: str) -> PipelineSpec | None:
        if target_id not in overridden:
            base = pipelines[target_id]
            problems = _override_issues(path, provider, target_id, base)
            override = provider.pipeline_overrides.get(target_id)
            spec = base
            if not problems and override is not None:
                merged = deep_merge(base.model_dump(), override.model_dump(exclude_none=True))
                try:
                    spec = PipelineSpec.model_validate(merged)
                except ValidationError as exc:
                    issue = _issues_from_validation(path, exc)[0]
                    problems.append(ConfigIssue(str(path), f"pipelines.{target_id}.{issue.field}", issue.reason))
            issues.extend(problems)
            overridden[target_id] = None if problems else spec
        return overridden[target_id]

    resolved = {}
    for pipeline_id in (p for p in provider.pipelines if p in pipelines):
        spec = resolve(pipeline_id)
        source_id = spec.model_source_pipeline if spec else None
        if spec and source_id and source_id != pipeline_id and source_id in pipelines and spec.features is not None:
            source = resolve(source_id)
            if source is not None and source.features is not None:
                spec = spec.model_copy(update={"label": source.label, "features": spec.features.model_copy(update={
                    "columns": source.features.columns, "categorical": source.features.categorical,
                    "needs": source.features.needs})})
        if spec is not None:
            resolved[pipeline_id] = spec
    return resolved, issues


def provider_warnings(path: Path, provider: ProviderConfig, resolved: dict[str, PipelineSpec]) -> list[ConfigIssue]:
    """What validates but is probably a mistake: ids read as numbers (leading zeros are lost), and label
    settings that leave no out-of-time window to judge a model on."""
    warnings = []
    for entity, spec in provider.entities.items():
        for name in key_columns(spec):
            column = spec.columns[name]
            if column.type in ("integer", "float"):
                warnings.append(ConfigIssue(str(path), f"entities.{entity}.columns.{name}.type", (
                    f"{column.type} ids lose their text ('00042' is read as 42, and an id that differs from another "
                    "only in leading zeros becomes the same customer); ids are best read as type: string. DQ fails "
                    "a drop whose ids change when read as numbers")))
    for pipeline_id, spec in resolved.items():
        if "train" not in spec.stages or spec.guardrails.promote_on != "out_of_time":
            continue
        label = spec.label
        if label.training_snapshots < 2 or (label.training_snapshots - 1) * label.snapshot_step_days < label.horizon_days:
            needed = -(-label.horizon_days // max(label.training_snapshots - 1, 1))
            warnings.append(ConfigIssue(str(path), f"pipelines.{pipeline_id}.label", (
                f"with horizon_days {label.horizon_days}, training_snapshots {label.training_snapshots} and "
                f"snapshot_step_days {label.snapshot_step_days} no training window's label period ends before the "
                "latest one starts, so the out-of-time backtest is off and promotion falls back to the customer "
                f"holdout; set snapshot_step_days >= {needed}"
                + (" and training_snapshots >= 2" if label.training_snapshots < 2 else ""))))
    return warnings


def _read_safely(path: Path, reader) -> Any:
    """reader(path); any exception becomes a ConfigError of this file (one file never takes the others down)."""
    try:
        return reader(path)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever goes wrong reading one file is that file's error
        raise ConfigError(str(path), "(file)", f"could not be read: {type(exc).__name__}: {exc}") from exc


def load_config_set(config_dir: Path, pipelines_dir: Path, sql_dir: Path) -> ConfigSet:
    """Load every provider and pipeline file; invalid files become issues, never exceptions."""
    issues: list[ConfigIssue] = []
    broken: dict[str, list[ConfigIssue]] = {}

    def record(file: Path | str, problem: ConfigIssue) -> None:
        listed = broken.setdefault(str(file), [])
        if problem not in listed:  # one cause reached twice (e.g. an override checked for two pipelines)
            listed.append(problem)
            issues.append(problem)

    pipeline_candidates: dict[str, list[tuple[Path, PipelineSpec]]] = {}
    broken_pipeline_ids: set[str] = set()
    pipeline_paths, entry_problems = config_entries(pipelines_dir)
    for problem in entry_problems:
        record(problem.file, problem)
    for path in pipeline_paths:
        try:
            spec = _read_safely(path, lambda p: load_pipeline_file(p, sql_dir))
        except ConfigError as exc:
            record(path, ConfigIssue(exc.file, exc.field, exc.reason))
            broken_pipeline_ids.add(path.stem)
            continue
        pipeline_candidates.setdefault(spec.pipeline_id, []).append((path, spec))
    pipelines: dict[str, PipelineSpec] = {}
    pipeline_files: dict[str, Path] = {}
    for pipeline_id, found in pipeline_candidates.items():
        if len(found) > 1:
            _refuse_shared_id(record, "pipeline_id", pipeline_id, [path for path, _ in found])
            broken_pipeline_ids.add(pipeline_id)
            continue
        pipeline_files[pipeline_id], pipelines[pipeline_id] = found[0]

    defaults_path = config_dir / DEFAULTS_FILE_NAME
    defaults: dict[str, Any] = {}
    if defaults_path.exists() or defaults_path.is_symlink():
        try:
            defaults = _read_safely(defaults_path, read_yaml_file)
        except ConfigError as exc:
            # Without defaults every provider would fail with confusing messages: report the root cause.
            record(defaults_path, ConfigIssue(exc.file, exc.field, exc.reason))
            return ConfigSet({}, pipelines, issues, {}, pipeline_files, defaults_path, broken)

    candidates: dict[str, list[tuple[Path, ProviderConfig]]] = {}
    provider_paths, entry_problems = config_entries(config_dir)
    for problem in entry_problems:
        record(problem.file, problem)
    for path in provider_paths:
        if path.name.startswith("_"):
            continue
        try:
            provider = _read_safely(path, lambda p: load_provider_file(p, defaults))
        except ConfigError as exc:
            record(path, ConfigIssue(exc.file, exc.field, exc.reason))
            continue
        candidates.setdefault(provider.provider_id, []).append((path, provider))

    providers: dict[str, ProviderConfig] = {}
    provider_files: dict[str, Path] = {}
    effective: dict[tuple[str, str], PipelineSpec] = {}
    warnings: list[ConfigIssue] = []
    for provider_id, found in candidates.items():
        if len(found) > 1:
            _refuse_shared_id(record, "provider_id", provider_id, [path for path, _ in found])
            continue
        path, provider = found[0]
        try:
            problems = _check_provider_against_pipelines(path, provider, pipelines, broken_pipeline_ids)
            resolved, override_problems = _effective_pipelines(path, provider, pipelines)
            problems += override_problems
        except Exception as exc:  # noqa: BLE001 - one provider's surprise is its own error
            problems = [ConfigIssue(str(path), "(file)", f"could not be checked: {type(exc).__name__}: {exc}")]
        if problems:
            for problem in problems:
                record(path, problem)
            continue
        effective.update({(provider_id, pipeline_id): spec for pipeline_id, spec in resolved.items()})
        warnings += provider_warnings(path, provider, resolved)
        usable = [p for p in provider.pipelines if p in pipelines]
        if usable != provider.pipelines:
            provider = provider.model_copy(update={"pipelines": usable})
        providers[provider_id] = provider
        provider_files[provider_id] = path
    providers = dict(sorted(providers.items(), key=lambda item: str(provider_files[item[0]])))
    return ConfigSet(providers, pipelines, issues, provider_files, pipeline_files,
                     defaults_path if defaults_path.exists() else None, broken, effective, warnings)


def _refuse_shared_id(record, field_name: str, shared_id: str, paths: list[Path]) -> None:
    """Two files claiming one id: neither wins (which one would depend on file names), both are named."""
    for path in paths:
        others = ", ".join(str(other) for other in paths if other != path)
        record(path, ConfigIssue(str(path), field_name, f"{shared_id!r} is also defined in {others}; ids must be "
                                 "unique, so neither file is used: rename or remove one"))


def config_entries(folder: Path) -> tuple[list[Path], list[ConfigIssue]]:
    """Every YAML file of a config folder (*.yaml and *.yml, in any letter case; links to files are followed, as
    Kubernetes mounts config maps), and an issue for each entry with such a name that is not a readable file."""
    if not folder.is_dir():
        return [], []
    files, problems = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            continue
        if path.is_file():
            files.append(path)
        elif path.is_symlink() and not path.exists():
            problems.append(ConfigIssue(str(path), "(file)", f"is a symbolic link to {os.readlink(path)}, which does "
                                        "not exist; point it at the config file or remove it"))
        else:
            kind = "a folder" if path.is_dir() else "not a regular file"
            problems.append(ConfigIssue(str(path), "(file)", f"is {kind}, not a config file; remove or rename it"))
    return files, problems


def config_files(folder: Path) -> list[Path]:
    """Every YAML file of a config folder that is a readable file (see config_entries)."""
    return config_entries(folder)[0]


def effective_config(provider: ProviderConfig, pipeline: PipelineSpec) -> dict[str, Any]:
    """The merged provider config and pipeline spec of one DAG, as plain JSON-able data."""
    return {"provider": provider.model_dump(mode="json"), "pipeline": pipeline.model_dump(mode="json")}


_CACHE: dict[tuple[str, str, str], tuple[tuple, ConfigSet]] = {}


def _folder_signature(folder: Path) -> tuple:
    """Every entry of a config folder with its size and change time: any edit, addition or removal changes it."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return ()
    signature = []
    for entry in entries:
        try:
            info = entry.stat()
        except OSError:
            signature.append((entry.name, None))
            continue
        signature.append((entry.name, info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(signature)


def cached_config_set(config_dir: Path, pipelines_dir: Path, sql_dir: Path) -> ConfigSet:
    """load_config_set, kept in this process while no file of the three folders changed (the pages of a
    long-lived api-server read a thousand provider files once, not on every request). The result is the same
    object load_config_set returned: callers must not change it."""
    key = (str(config_dir), str(pipelines_dir), str(sql_dir))
    signature = (_folder_signature(config_dir), _folder_signature(pipelines_dir), _folder_signature(sql_dir))
    cached = _CACHE.get(key)
    if cached and cached[0] == signature:
        return cached[1]
    config_set = load_config_set(config_dir, pipelines_dir, sql_dir)
    _CACHE[key] = (signature, config_set)
    return config_set
