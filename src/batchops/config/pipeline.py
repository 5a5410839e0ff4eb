"""Pipeline specs: an ordered list of stages and their settings (features, label, model, guardrails)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from batchops.config.common import (
    STAGE_PREREQUISITES,
    ColumnType,
    DagPart,
    Fraction,
    Identifier,
    StageName,
    StrictModel,
)


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

