"""What every config model shares: identifiers, strict models, stage names."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)

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



_SAFE_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    """A lowercase identifier-safe version of a file name (for placeholder DAG ids)."""
    return _SAFE_SLUG.sub("_", text.lower()).strip("_") or "unnamed"
