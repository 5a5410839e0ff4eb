"""train: fit on features at T - horizon (labels from [T - horizon, T)), evaluate on held-out customers,
then promote only through the guardrails: thresholds and no worse than the champion on the same holdout."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchops.artifacts import replace_dir_atomic, sha256_of_file, write_json_atomic, write_with
from batchops.config import Guardrails, feature_set
from batchops.errors import DataQualityError
from batchops.models import (
    REGISTRY_SIDECAR,
    build_model,
    latest_approved,
    load_verified_model,
    register_model,
    store_relative_path,
)
from batchops.plots import plot_roc_curve
from batchops.runcontext import RunContext
from batchops.warehouse import open_warehouse, transaction

TRAINING_QUERY = """
SELECT features.*, labels.label
FROM features
JOIN labels USING (customer_id, snapshot_date, source_snapshot)
WHERE features.source_snapshot = CAST($snapshot_date AS DATE) AND features.purpose = 'train'
ORDER BY features.snapshot_date, features.customer_id
"""


def read_training_frame(ctx: RunContext):
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        return warehouse.execute(TRAINING_QUERY, {"snapshot_date": ctx.snapshot_date.isoformat()}).df()


def split_customers(frame, test_size: float, seed: int):
    """Hold out a stratified share of customers (all their rows), so no customer is on both sides.
    Works on integer codes: pandas groupby over string ids costs seconds at a million customers."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    codes, customers = pd.factorize(frame["customer_id"])
    latest_label = np.zeros(len(customers), dtype=np.int8)
    latest_label[codes] = frame["label"].to_numpy()  # rows come ordered by date: the last write is the latest
    counts = np.bincount(latest_label, minlength=2)
    stratify = latest_label if counts.min() >= 2 else None
    _, test_codes = train_test_split(np.arange(len(customers)), test_size=test_size, random_state=seed,
                                     stratify=stratify)
    is_test_customer = np.zeros(len(customers), dtype=bool)
    is_test_customer[test_codes] = True
    is_test = is_test_customer[codes]
    return frame[~is_test], frame[is_test]


def cap_rows(rows, limit: int, seed: int):
    """A stratified sample of at most `limit` rows (all rows when there are fewer)."""
    if len(rows) <= limit:
        return rows
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(rows, train_size=limit, random_state=seed, stratify=rows["label"].to_numpy())
    return sample


def evaluate(model, holdout, features: list[str]) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    y = holdout["label"].to_numpy()
    scores = model.predict_proba(holdout[features])[:, 1]
    both_classes = len(set(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, scores)) if both_classes else float("nan"),
        "accuracy": float(accuracy_score(y, scores >= 0.5)),
        "pr_auc": float(average_precision_score(y, scores)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
    }


def decide_promotion(metrics: dict[str, Any], guardrails: Guardrails, champion: dict[str, Any] | None) -> tuple[str, str]:
    """('approved' | 'rejected', why) from the thresholds and the champion's AUC on the same holdout."""
    reasons = []
    if not metrics["roc_auc"] >= guardrails.min_roc_auc:
        reasons.append(f"roc_auc {metrics['roc_auc']:.4f} is below min_roc_auc {guardrails.min_roc_auc}")
    if metrics["n_train"] < guardrails.min_train_rows:
        reasons.append(f"n_train {metrics['n_train']} is below min_train_rows {guardrails.min_train_rows}")
    if champion and champion.get("roc_auc_on_holdout") is not None:
        floor = champion["roc_auc_on_holdout"] - guardrails.max_auc_drop
        if metrics["roc_auc"] < floor:
            reasons.append(f"roc_auc {metrics['roc_auc']:.4f} is more than {guardrails.max_auc_drop} below champion "
                           f"{champion['model_id']} ({champion['roc_auc_on_holdout']:.4f} on the same holdout)")
    if reasons:
        return "rejected", "; ".join(reasons)
    against = (f"; champion {champion['model_id']} scored {champion['roc_auc_on_holdout']:.4f} on the same holdout"
               if champion and champion.get("roc_auc_on_holdout") is not None else "; no champion to compare with")
    return "approved", f"passed min_roc_auc {guardrails.min_roc_auc} and min_train_rows {guardrails.min_train_rows}{against}"


def _champion_on_holdout(ctx: RunContext, holdout, features: list[str]) -> dict[str, Any] | None:
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        champion = latest_approved(warehouse, ctx.settings, ctx.pipeline.model_pipeline, ctx.snapshot_date)
    if champion is None:
        return None
    described: dict[str, Any] = {"model_id": champion.model_id, "registered_roc_auc": champion.roc_auc,
                                 "training_snapshot": str(champion.training_snapshot)}
    if champion.features != features:
        described["note"] = "champion uses other features; compared on thresholds only"
        return described
    model = load_verified_model(ctx.settings, ctx.provider.provider_id, champion)
    described["roc_auc_on_holdout"] = evaluate(model, holdout, features)["roc_auc"]
    return described


def library_versions() -> dict[str, str]:
    import duckdb
    import joblib
    import pandas
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "pandas": pandas.__version__,
            "duckdb": duckdb.__version__, "joblib": joblib.__version__}


def train(ctx: RunContext) -> dict[str, Any]:
    """Fit, evaluate, decide promotion, register; writes metrics.json, model/ and roc_curve.png."""
    import joblib

    log = ctx.logger("train")
    settings = ctx.pipeline.model
    chosen = feature_set(ctx.provider, ctx.pipeline)  # only features whose columns this provider has
    features = chosen.used
    frame = read_training_frame(ctx)
    if frame.empty:
        raise DataQualityError(f"no training rows for snapshot {ctx.snapshot_date}: features/labels are empty. "
                               "Check that build_features ran and that the drop has history before T - horizon.")
    if frame["label"].nunique() < 2:
        raise DataQualityError(f"every training label is {frame['label'].iloc[0]} for snapshot {ctx.snapshot_date}; "
                               "a model needs both active and inactive customers")
    train_rows, holdout = split_customers(frame, settings.test_size, settings.random_state)
    train_rows = cap_rows(train_rows, settings.max_train_rows, settings.random_state)
    with log.timed("fit", n_train=len(train_rows), n_test=len(holdout)):
        model = build_model(settings, chosen.numeric, chosen.categorical)
        model.fit(train_rows[features], train_rows["label"].to_numpy())
    metrics: dict[str, Any] = evaluate(model, holdout, features)
    metrics.update({
        "n_train": int(len(train_rows)), "n_test": int(len(holdout)),
        "n_train_available": int(len(frame) - len(holdout)),
        "positive_rate_train": float(train_rows["label"].mean()), "positive_rate_test": float(holdout["label"].mean()),
        "training_snapshot": ctx.snapshot_date.isoformat(),
        "feature_dates": sorted({str(d)[:10] for d in frame["snapshot_date"].unique()}),
        "label": ctx.pipeline.label.model_dump(), "features": features,
        "features_absent": {feature: f"needs {', '.join(columns)}, which the provider does not map"
                            for feature, columns in chosen.absent.items()},
        "model_settings": settings.model_dump(),
        "library_versions": library_versions(),
    })
    champion = _champion_on_holdout(ctx, holdout, features)
    status, reason = decide_promotion(metrics, ctx.pipeline.guardrails, champion)

    model_dir = ctx.run_dir / "model"
    write_with(model_dir / "model.pkl", lambda temp: joblib.dump(model, temp))
    sha = sha256_of_file(model_dir / "model.pkl")
    # The run is part of the id: retraining identical bytes in another run (say, under other guardrails)
    # is a new registry decision and must not overwrite the earlier one; a retry of the same run is idempotent.
    run_tag = hashlib.sha256(ctx.run_id.encode()).hexdigest()[:8]
    model_id = f"{ctx.provider.provider_id}__{ctx.pipeline.pipeline_id}__{ctx.snapshot_date:%Y%m%d}__{sha[:10]}{run_tag}"
    store_dir = ctx.settings.model_store(ctx.provider.provider_id) / model_id
    promotion = {"status": status, "reason": reason, "champion": champion}
    metrics.update({"model_id": model_id, "promotion": promotion})
    entry = {
        "model_id": model_id, "pipeline": ctx.pipeline.pipeline_id,
        "training_snapshot": ctx.snapshot_date.isoformat(), "trained_in_run": ctx.run_id, "status": status,
        "reason": reason, "roc_auc": metrics["roc_auc"],
        "champion_model_id": champion["model_id"] if champion else None,
        "champion_roc_auc": champion.get("roc_auc_on_holdout") if champion else None,
        "sha256": sha, "path": store_relative_path(model_id), "features": json.dumps(features),
        "registered_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")}

    def fill_store(staging: Path) -> None:
        # registry.json beside the model: the registry row again, so a rebuilt warehouse can re-register it
        shutil.copy2(model_dir / "model.pkl", staging / "model.pkl")
        (staging / REGISTRY_SIDECAR).write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")

    replace_dir_atomic(store_dir, fill_store)
    meta = {"model_id": model_id, "sha256": sha, "features": features, "training_snapshot": metrics["training_snapshot"],
            "store_path": str(store_dir / "model.pkl"), "metrics": {k: metrics[k] for k in
                                                                    ("roc_auc", "accuracy", "pr_auc", "brier")},
            "promotion": promotion, "library_versions": metrics["library_versions"]}
    write_json_atomic(model_dir / "model_meta.json", meta)
    write_json_atomic(ctx.run_dir / "metrics.json", metrics)
    plot_roc_curve(holdout["label"].to_numpy(), model.predict_proba(holdout[features])[:, 1],
                   ctx.run_dir / "roc_curve.png", title=model_id)
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse, transaction(warehouse):
        register_model(warehouse, ctx.settings, entry)
    log.event("model_registered", level="INFO" if status == "approved" else "WARNING", model_id=model_id,
              status=status, reason=reason, roc_auc=round(metrics["roc_auc"], 4))
    return {"model_id": model_id, "status": status, "reason": reason, "roc_auc": metrics["roc_auc"]}

