"""Provider and pipeline configs: typed models (provider, pipeline), and loading them all (loading).

A provider file (include/configs/<provider>.yaml) is deep-merged over include/configs/_defaults.yaml
and then validated; a pipeline file (include/pipelines/<pipeline>.yaml) is validated as is. Every
problem becomes a ConfigIssue (file, field path, reason); one broken file never hides the others.
"""

from batchops.config.common import (
    DEFAULTS_FILE_NAME,
    IDENTIFIER_PATTERN,
    INTERNAL_TABLES,
    slug,
)
from batchops.config.loading import (
    ConfigIssue,
    ConfigSet,
    FeatureSet,
    cached_config_set,
    deep_merge,
    effective_config,
    feature_set,
    load_config_set,
    load_provider_file,
    pipeline_sql_files,
)
from batchops.config.pipeline import Guardrails, ModelSettings, PipelineOverride, PipelineSpec
from batchops.config.provider import ColumnSpec, EntitySpec, ProviderConfig, key_columns, normalization

__all__ = [
    "DEFAULTS_FILE_NAME", "IDENTIFIER_PATTERN", "INTERNAL_TABLES", "ColumnSpec", "ConfigIssue", "ConfigSet",
    "EntitySpec", "FeatureSet", "Guardrails", "ModelSettings", "PipelineOverride", "PipelineSpec", "ProviderConfig",
    "cached_config_set", "deep_merge", "effective_config", "feature_set", "key_columns", "load_config_set", "load_provider_file",
    "normalization", "pipeline_sql_files", "slug",
]
