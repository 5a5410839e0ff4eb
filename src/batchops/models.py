"""Models: the scikit-learn pipeline, the model store, the registry and integrity checks.

A model is loaded only from the provider's model store (BATCHOPS_WAREHOUSE_DIR/models/<provider>/)
and only when its file's sha256 equals the registry's: pickle runs code on load, so nothing else
is ever unpickled.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from batchops.artifacts import sha256_of_file
from batchops.config import ModelSettings
from batchops.errors import ModelIntegrityError
from batchops.settings import Settings
from batchops.sqlfiles import run_sql_file
from batchops.storage.warehouse import open_warehouse, warehouse_path


def signed_log1p(values):
    """Compress heavy-tailed counts and amounts; keeps the sign of trends."""
    return np.sign(values) * np.log1p(np.abs(values))


def build_model(settings: ModelSettings, numeric: list[str], categorical: list[str]):
    """impute -> log -> scale for numbers, impute -> one-hot for categories, then LogisticRegression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric_steps = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
        ("scale", StandardScaler()),
    ])
    parts = [("numeric", numeric_steps, numeric)]
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
            ("one_hot", OneHotEncoder(handle_unknown="ignore")),
        ]), categorical))
    return Pipeline([
        ("features", ColumnTransformer(parts)),
        ("classifier", LogisticRegression(C=settings.C, max_iter=settings.max_iter, solver=settings.solver,
                                          class_weight=settings.class_weight, random_state=settings.random_state)),
    ])


@dataclass(frozen=True)
class RegisteredModel:
    """A registry row; path is the model file in this deployment's store (the registry keeps it
    relative to the store, so a warehouse moved to another folder or machine keeps working)."""

    model_id: str
    pipeline: str
    training_snapshot: date
    status: str
    sha256: str
    path: Path
    features: list[str]
    roc_auc: float | None
    pruned_at: Any = None  # when retention removed its files


REGISTRY_SIDECAR = "registry.json"
REGISTRY_FIELDS = ("model_id", "pipeline", "training_snapshot", "trained_in_run", "status", "reason", "roc_auc",
                   "champion_model_id", "champion_roc_auc", "sha256", "path", "features", "registered_at")
TRAINING_PROFILE = "training_profile.json"  # beside model.pkl: what the model learned from, for the drift guardrail
_REGISTRY_COLUMNS = "model_id, pipeline, training_snapshot, status, sha256, path, features, roc_auc, pruned_at"


def _row_to_model(row, store: Path) -> RegisteredModel:
    return RegisteredModel(row[0], row[1], row[2], row[3], row[4], store / row[5], json.loads(row[6]), row[7], row[8])


def store_relative_path(model_id: str) -> str:
    """Where a model's file lies inside its provider's store: what the registry records."""
    return f"{model_id}/model.pkl"


def ensure_registry(warehouse, settings: Settings) -> None:
    """Create the registry if needed; registries written before paths were store-relative are migrated."""
    run_sql_file(warehouse, settings.sql_dir, "model_registry.sql", {})


def latest_approved(warehouse, settings: Settings, pipeline: str, as_of: date) -> RegisteredModel | None:
    """The newest approved model of the pipeline trained on a snapshot no later than as_of."""
    ensure_registry(warehouse, settings)
    row = warehouse.execute(
        f"SELECT {_REGISTRY_COLUMNS} FROM model_registry WHERE pipeline = $pipeline AND status = 'approved' "
        "AND training_snapshot <= CAST($as_of AS DATE) ORDER BY training_snapshot DESC, registered_at DESC LIMIT 1",
        {"pipeline": pipeline, "as_of": as_of.isoformat()}).fetchone()
    return _row_to_model(row, settings.model_store(warehouse.provider_id)) if row else None


def approved_twin(warehouse, settings: Settings, pipeline: str, sha256: str,
                  model_id: str) -> RegisteredModel | None:
    """Another approved model of the pipeline with exactly these bytes (a retrain of a snapshot on the same data).
    The model itself is no twin: a retry of the run that registered it must keep its decision."""
    ensure_registry(warehouse, settings)
    row = warehouse.execute(
        f"SELECT {_REGISTRY_COLUMNS} FROM model_registry WHERE pipeline = $pipeline AND status = 'approved' "
        "AND sha256 = $sha AND model_id <> $model_id ORDER BY registered_at LIMIT 1",
        {"pipeline": pipeline, "sha": sha256, "model_id": model_id}).fetchone()
    return _row_to_model(row, settings.model_store(warehouse.provider_id)) if row else None


def models_trained_on(warehouse, settings: Settings, snapshot: date) -> list[str]:
    """The models registered from this drop (any pipeline): prune removed their training rows afterwards."""
    ensure_registry(warehouse, settings)
    return [row[0] for row in warehouse.execute(
        "SELECT model_id FROM model_registry WHERE training_snapshot = CAST($snapshot AS DATE) ORDER BY registered_at",
        {"snapshot": snapshot.isoformat()}).fetchall()]


def latest_rejection(warehouse, settings: Settings, pipeline: str, as_of: date) -> str | None:
    """Why the newest model of the pipeline (trained on or before as_of) was not approved, if it was not."""
    ensure_registry(warehouse, settings)
    row = warehouse.execute(
        "SELECT model_id, training_snapshot, status, reason FROM model_registry WHERE pipeline = $pipeline "
        "AND training_snapshot <= CAST($as_of AS DATE) ORDER BY training_snapshot DESC, registered_at DESC LIMIT 1",
        {"pipeline": pipeline, "as_of": as_of.isoformat()}).fetchone()
    if row is None or row[2] in ("approved", "identical"):  # identical: an approved twin is in force
        return None
    return f"the newest model, {row[0]} (trained on {row[1]}), was {row[2]}: {row[3]}"


def find_approved_model(settings: Settings, provider_id: str, pipeline: str, as_of: date) -> RegisteredModel | None:
    """Registry look-up for the sensor; None when the provider has no warehouse or no approved model yet."""
    if not warehouse_path(settings, provider_id).exists():
        return None
    with open_warehouse(settings, provider_id) as warehouse:
        return latest_approved(warehouse, settings, pipeline, as_of)


def find_rejection(settings: Settings, provider_id: str, pipeline: str, as_of: date) -> str | None:
    """latest_rejection for the sensor; None when the provider has no warehouse."""
    if not warehouse_path(settings, provider_id).exists():
        return None
    with open_warehouse(settings, provider_id) as warehouse:
        return latest_rejection(warehouse, settings, pipeline, as_of)


def model_history(settings: Settings, provider_id: str, pipeline: str, limit: int = 5,
                  as_of: datetime | None = None) -> list[dict[str, Any]]:
    """The pipeline's last `limit` registry decisions, newest first: the champion history of a model card. With
    `as_of`, only the decisions made by then (a run's card shows the registry as that run left it)."""
    if not warehouse_path(settings, provider_id).exists():
        return []
    with open_warehouse(settings, provider_id) as warehouse:
        ensure_registry(warehouse, settings)
        rows = warehouse.execute(
            "SELECT model_id, training_snapshot, status, reason, roc_auc, registered_at FROM model_registry "
            "WHERE pipeline = $pipeline AND registered_at <= CAST($as_of AS TIMESTAMP) "
            "ORDER BY registered_at DESC LIMIT $limit",
            {"pipeline": pipeline, "limit": limit,
             "as_of": (as_of or datetime(9999, 12, 31)).replace(tzinfo=None).isoformat()}).fetchall()
    return [{"model_id": r[0], "training_snapshot": str(r[1]), "status": r[2], "reason": r[3],
             "roc_auc": r[4], "registered_at": str(r[5])[:19]} for r in rows]


def verify_model_file(settings: Settings, provider_id: str, model: RegisteredModel) -> Path:
    """Refuse a model outside the provider's store, missing, or whose bytes changed since registration."""
    store = settings.model_store(provider_id).resolve()
    path = model.path.resolve()
    if not path.is_relative_to(store):
        raise ModelIntegrityError(f"model {model.model_id}: {path} is outside the model store {store}; refusing it")
    if not path.is_file():
        why = (f"was removed by retention on {str(model.pruned_at)[:10]} (retention.models_kept and champions_kept): "
               "scores made with it cannot be reproduced" if model.pruned_at else "is missing")
        raise ModelIntegrityError(f"model {model.model_id}: {path} {why}; re-run the training DAG "
                                  f"({provider_id}__{model.pipeline}) to produce a model")
    actual = sha256_of_file(path)
    if actual != model.sha256:
        raise ModelIntegrityError(
            f"model {model.model_id}: sha256 of {path} is {actual[:16]}..., the registry says {model.sha256[:16]}...; "
            "the file was changed after training. Refusing to load it; retrain to replace it.")
    return path


def load_verified_model(settings: Settings, provider_id: str, model: RegisteredModel):
    """Unpickle a model only after verify_model_file; a version mismatch warning is an error."""
    import joblib

    path = verify_model_file(settings, provider_id, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return joblib.load(path)
        except Exception as exc:
            raise ModelIntegrityError(
                f"model {model.model_id} at {path} cannot be loaded safely here ({type(exc).__name__}: {exc}); "
                "it was probably saved by another scikit-learn version. Retrain it with this deployment.") from exc


def check_features_match(model, model_id: str, feature_columns: list[str]) -> None:
    expected = list(getattr(model, "feature_names_in_", []))
    if expected and expected != feature_columns:
        raise ModelIntegrityError(
            f"model {model_id} expects features {expected}, the pipeline now provides {feature_columns}; "
            "retrain the model after changing the feature set")


def register_model(warehouse, settings: Settings, entry: dict[str, Any]) -> None:
    ensure_registry(warehouse, settings)
    warehouse.execute(
        "INSERT OR REPLACE INTO model_registry (model_id, pipeline, training_snapshot, trained_in_run, status, reason, "
        "roc_auc, champion_model_id, champion_roc_auc, sha256, path, features, registered_at) VALUES ($model_id, "
        "$pipeline, CAST($training_snapshot AS DATE), $trained_in_run, $status, $reason, $roc_auc, $champion_model_id, "
        "$champion_roc_auc, $sha256, $path, $features, CAST($registered_at AS TIMESTAMP))",
        {key: entry.get(key) for key in REGISTRY_FIELDS})
