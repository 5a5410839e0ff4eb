"""train: an out-of-time backtest first (fit on the windows before the latest labelled one, score that
window), then the production model on the training windows with a customer holdout; promote only
through the guardrails, judged on the out-of-time window by default, champion and challenger on the
same rows. The model keeps its training profile (for the drift guardrail at scoring)."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchops.artifacts import (
    new_staging_dir,
    publish_dir,
    replace_dir_atomic,
    sha256_of_file,
    write_json_atomic,
)
from batchops.config import Guardrails, feature_set
from batchops.duck import fetch_frame, widen_floats
from batchops.errors import DataQualityError
from batchops.faults import crash_point
from batchops.models import (
    REGISTRY_SIDECAR,
    TRAINING_PROFILE,
    approved_twin,
    build_model,
    latest_approved,
    load_verified_model,
    models_trained_on,
    register_model,
    store_relative_path,
)
from batchops.modeltrust import (
    classification_metrics,
    judgement_warning,
    lift_table,
    out_of_time_positions,
    reliability_curve,
    standardized_coefficients,
    training_profile,
)
from batchops.plots import plot_reliability, plot_roc_curve
from batchops.runcontext import RunContext
from batchops.sqlsafe import quote_identifier
from batchops.storage.warehouse import open_warehouse, transaction

# Every training row's identity and label, in a fixed order (positions index it): the split and the
# samples are drawn on these three narrow columns, then only the sampled rows' features are read.
TRAINING_KEYS_QUERY = """
SELECT hash(features.customer_id) AS customer_key, features.snapshot_date, labels.label
FROM features
JOIN labels USING (customer_id, snapshot_date, source_snapshot)
WHERE features.source_snapshot = CAST($snapshot_date AS DATE) AND features.purpose = 'train'
ORDER BY features.snapshot_date, features.customer_id
"""

# the label comes from the keys, and the order from the position index: without the labels join and the
# ORDER BY, 0.68 s at M for 800k rows against 1.33 s
TRAINING_ROWS_QUERY = """
SELECT wanted.position, {columns}
FROM wanted
JOIN features ON hash(features.customer_id) = wanted.wanted_key AND features.snapshot_date = wanted.wanted_date
WHERE features.source_snapshot = CAST($snapshot_date AS DATE) AND features.purpose = 'train'
"""


def read_training_keys(ctx: RunContext):
    """customer_key (a 64-bit hash of the id: the split needs only its identity), snapshot_date and label of
    every training row: 13 bytes a row, where the whole frame of features took train over 2 GiB at 3M
    customers x 2 windows."""
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        return fetch_frame(warehouse.execute(TRAINING_KEYS_QUERY, {"snapshot_date": ctx.snapshot_date.isoformat()}))


def read_training_rows(ctx: RunContext, chosen, keys, positions):
    """The model's columns and the label of the rows of `keys` at `positions`, indexed by position; numbers are
    read as float32 and widened to float64 here (the model's arithmetic), categories as pandas categories."""
    import numpy as np
    import pandas as pd

    positions = np.unique(positions)
    chosen_keys = keys.iloc[positions]
    wanted = pd.DataFrame({"position": positions, "wanted_key": chosen_keys["customer_key"].to_numpy(),
                           "wanted_date": chosen_keys["snapshot_date"].to_numpy()})
    columns = ", ".join([f"CAST(features.{quote_identifier(name)} AS FLOAT) AS {quote_identifier(name)}"
                         for name in chosen.numeric] +
                        [f"features.{quote_identifier(name)}" for name in chosen.categorical])
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        warehouse.register("wanted", wanted)
        rows = fetch_frame(warehouse.execute(TRAINING_ROWS_QUERY.format(columns=columns),
                                             {"snapshot_date": ctx.snapshot_date.isoformat()}),
                           categorical=chosen.categorical)
    if len(rows) != len(positions):
        # two ids of one window with the same 64-bit hash (odds about 1e-7 at 3M customers), or the tables
        # changed under the task
        raise DataQualityError(f"read {len(rows)} training rows for {len(positions)} sampled ones of snapshot "
                               f"{ctx.snapshot_date}; clear build_features and train to rebuild them")
    rows = rows.set_index("position").sort_index()
    rows["label"] = keys["label"].to_numpy()[rows.index.to_numpy()]
    return widen_floats(rows)


def stratified_sample(positions, labels, size: int, seed: int):
    """`size` of `positions` drawn without replacement, each label class in its share, sorted. numpy's
    generator instead of scikit-learn's StratifiedShuffleSplit, which permutes every position per class:
    1.5 s of train at a million customers for the same draw."""
    import numpy as np

    positions = np.asarray(positions)
    if size >= len(positions):
        return positions
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels[positions], return_counts=True)
    quotas = np.floor(counts * size / len(positions)).astype(int)
    # the rows the floor left over go to the classes with the largest remainders
    remainders = counts * size / len(positions) - quotas
    quotas[np.argsort(-remainders, kind="stable")[:size - quotas.sum()]] += 1
    drawn = [rng.choice(positions[labels[positions] == cls], quota, replace=False)
             for cls, quota in zip(classes, quotas, strict=True) if quota]
    return np.sort(np.concatenate(drawn))


def split_customers(frame, test_size: float, seed: int):
    """(train positions, holdout positions): a stratified share of customers (all their rows) is held out, so
    no customer is on both sides. Works on integer codes: pandas groupby over string ids costs seconds at a
    million customers."""
    import math

    import numpy as np
    import pandas as pd

    codes, customers = pd.factorize(frame["customer_key"])
    latest_label = np.zeros(len(customers), dtype=np.int8)
    latest_label[codes] = frame["label"].to_numpy()  # rows come ordered by date: the last write is the latest
    test_count = min(max(math.ceil(test_size * len(customers)), 1), len(customers) - 1)
    if np.bincount(latest_label, minlength=2).min() < 2:
        latest_label = np.zeros_like(latest_label)  # too few of a class to stratify: a plain random share
    test_codes = stratified_sample(np.arange(len(customers)), latest_label, test_count, seed)
    is_test_customer = np.zeros(len(customers), dtype=bool)
    is_test_customer[test_codes] = True
    is_test = is_test_customer[codes]
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def backtest_positions(frame, settings, horizon_days: int):
    """(fit sample, window sample, window date) of the out-of-time backtest as positions of `frame`, or
    (None, None, why) when the training windows do not allow one."""
    import numpy as np

    split = out_of_time_positions(frame, horizon_days)
    if split is None:
        return None, None, ("needs a training window whose label period ends before the latest one starts "
                            "(label.training_snapshots >= 2 and snapshot_step_days >= horizon_days)")
    past, window_positions, window_date = split
    labels = frame["label"].to_numpy()
    # np.unique, not set(): a Python set over a million numpy scalars cost 2.4 s
    if len(np.unique(labels[past])) < 2 or len(np.unique(labels[window_positions])) < 2:
        return None, None, "the earlier windows or the latest window have only one label class"
    # the window is judged on a stratified sample of the same size cap: the AUC's standard error at 200k
    # rows is about 0.001, and scoring a million rows through the pipeline cost seconds
    return (stratified_sample(past, labels, settings.max_train_rows, settings.random_state),
            stratified_sample(window_positions, labels, settings.max_train_rows, settings.random_state),
            window_date)


def make_model(settings, chosen):
    """The pipeline of build_model, calibrated when model.calibration asks (the base model is fitted on all
    rows and the calibrator on 3-fold predictions, so coefficients stay those of one model)."""
    from sklearn.calibration import CalibratedClassifierCV

    model = build_model(settings, chosen.numeric, chosen.categorical)
    if settings.calibration == "none":
        return model
    return CalibratedClassifierCV(model, method=settings.calibration, cv=3, ensemble=False)


def evaluate(model, holdout, features: list[str]) -> dict[str, float]:
    metrics = classification_metrics(holdout["label"].to_numpy(), model.predict_proba(holdout[features])[:, 1])
    metrics.pop("n")
    metrics.pop("positive_rate")
    return metrics


def out_of_time_backtest(frame, chosen, settings, horizon_days: int, rows_at=None, positions=None):
    """(report, window rows, window scores): a model fitted on the windows whose label period ends before the
    latest labelled window starts, judged on that window. report["available"] is False (with why) when the
    training windows do not allow it. `frame` needs snapshot_date and label; rows_at(positions) gives the
    model's columns of those rows (default: `frame` holds them); `positions` is backtest_positions' answer
    when the caller has it already."""
    import numpy as np

    rows_at = rows_at or (lambda chosen_positions: widen_floats(frame.iloc[chosen_positions]))
    fit_positions, window_positions, window_date = positions or backtest_positions(frame, settings, horizon_days)
    if fit_positions is None:
        return {"available": False, "reason": window_date}, None, None
    model = make_model(settings, chosen)
    fit_rows = rows_at(fit_positions)
    model.fit(fit_rows[chosen.used], fit_rows["label"].to_numpy())
    window = rows_at(window_positions)
    scores = model.predict_proba(window[chosen.used])[:, 1]
    labels = window["label"].to_numpy()
    start = str(window_date)[:10]
    fitted_on = np.unique(frame["snapshot_date"].to_numpy()[fit_positions])
    report = {"available": True, **classification_metrics(labels, scores),
              "fitted_on_windows": sorted({str(d)[:10] for d in fitted_on}),
              "n_fit": int(len(fit_rows)), "scored_window": start,
              "label_period": f"[{start}, {start} + {horizon_days} days)",
              "lift": lift_table(labels, scores), "reliability": reliability_curve(labels, scores)}
    return report, window, scores


def decide_promotion(metrics: dict[str, Any], guardrails: Guardrails, champion: dict[str, Any] | None,
                     window: str = "holdout") -> tuple[str, str]:
    """('approved' | 'rejected', why) from the thresholds on metrics["roc_auc"] (the figure measured on
    `window`) and the champion's AUC (champion["roc_auc_on_window"]) against the challenger's on the same
    rows (champion["challenger_roc_auc"], else metrics["roc_auc"]; champion["window"] names those rows)."""
    reasons = []
    if not metrics["roc_auc"] >= guardrails.min_roc_auc:
        reasons.append(f"{window} roc_auc {metrics['roc_auc']:.4f} is below min_roc_auc {guardrails.min_roc_auc}")
    if metrics["n_train"] < guardrails.min_train_rows:
        reasons.append(f"n_train {metrics['n_train']} is below min_train_rows {guardrails.min_train_rows}")
    if champion and champion.get("roc_auc_on_window") is not None:
        floor = champion["roc_auc_on_window"] - guardrails.max_auc_drop
        challenger = champion.get("challenger_roc_auc", metrics["roc_auc"])
        compared_on = champion.get("window", window)
        if challenger < floor:
            reasons.append(f"{compared_on} roc_auc {challenger:.4f} is more than {guardrails.max_auc_drop} below "
                           f"champion {champion['model_id']} ({champion['roc_auc_on_window']:.4f} on the same rows)")
    if reasons:
        return "rejected", "; ".join(reasons)
    against = (f"; champion {champion['model_id']} scored {champion['roc_auc_on_window']:.4f} on the same "
               f"{champion.get('window', window)} rows" if champion and champion.get("roc_auc_on_window") is not None
               else "; no champion to compare with")
    return "approved", (f"{window} roc_auc {metrics['roc_auc']:.4f} passed min_roc_auc {guardrails.min_roc_auc} "
                        f"and min_train_rows {guardrails.min_train_rows}{against}")


def _champion_on(ctx: RunContext, features: list[str], forward: dict[str, Any], window_rows, holdout,
                 holdout_auc: float) -> dict[str, Any] | None:
    """The champion scored on the rows the challenger is compared on: the out-of-time window when the
    champion was trained on or before that window began (it has not seen its outcomes, and neither has the
    backtest model), else the customer holdout, where the two production models meet."""
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        champion = latest_approved(warehouse, ctx.settings, ctx.pipeline.model_pipeline, ctx.snapshot_date)
    if champion is None:
        return None
    described: dict[str, Any] = {"model_id": champion.model_id, "registered_roc_auc": champion.roc_auc,
                                 "training_snapshot": str(champion.training_snapshot)}
    if champion.features != features:
        described["note"] = "champion uses other features; compared on thresholds only"
        return described
    unseen = forward.get("available") and str(champion.training_snapshot) <= forward["scored_window"]
    if ctx.pipeline.guardrails.promote_on == "out_of_time" and unseen:
        rows, challenger = window_rows, forward["roc_auc"]
        described["window"] = "out_of_time"
    else:
        rows, challenger = holdout, holdout_auc
        described["window"] = "holdout"
        if forward.get("available"):
            described["note"] = ("the champion was trained after the out-of-time window began and has seen its "
                                 "outcomes: the two production models are compared on the customer holdout")
    model = load_verified_model(ctx.settings, ctx.provider.provider_id, champion)
    described["roc_auc_on_window"] = evaluate(model, rows, features)["roc_auc"]
    described["challenger_roc_auc"] = challenger
    return described


def library_versions() -> dict[str, str]:
    import duckdb
    import joblib
    import pandas
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "pandas": pandas.__version__,
            "duckdb": duckdb.__version__, "joblib": joblib.__version__}


def train(ctx: RunContext) -> dict[str, Any]:
    """Backtest, fit, evaluate, decide promotion, register; writes metrics.json, model/ (with the training
    profile), roc_curve.png and reliability.png."""
    import joblib
    import numpy as np

    log = ctx.logger("train")
    settings = ctx.pipeline.model
    guardrails = ctx.pipeline.guardrails
    horizon = ctx.pipeline.label.horizon_days
    chosen = feature_set(ctx.provider, ctx.pipeline)  # only features whose columns this provider has
    features = chosen.used
    frame = read_training_keys(ctx)
    if frame.empty:
        with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
            served = models_trained_on(warehouse, ctx.settings, ctx.snapshot_date)
        if served:
            raise DataQualityError(
                f"no training rows for snapshot {ctx.snapshot_date}: prune removed them after {', '.join(served)} was "
                "registered from this drop (retention.keep_training_rows false). Clear build_features and train "
                "together: build_features builds the same rows again.")
        raise DataQualityError(f"no training rows for snapshot {ctx.snapshot_date}: features/labels are empty. "
                               "Check that build_features ran and that the drop has history before T - horizon.")
    if frame["label"].nunique() < 2:
        raise DataQualityError(f"every training label is {frame['label'].iloc[0]} for snapshot {ctx.snapshot_date}; "
                               "a model needs both active and inactive customers")
    labels_all = frame["label"].to_numpy()
    train_positions, holdout_positions = split_customers(frame, settings.test_size, settings.random_state)
    train_sample = stratified_sample(train_positions, labels_all, settings.max_train_rows, settings.random_state)
    holdout_sample = stratified_sample(holdout_positions, labels_all, settings.max_train_rows, settings.random_state)
    backtest = backtest_positions(frame, settings, horizon)
    # one read of the features of every sampled row (at most 4 x max_train_rows), whatever the drop's size
    sampled = [p for p in (train_sample, holdout_sample, *backtest[:2]) if p is not None]
    rows = read_training_rows(ctx, chosen, frame, np.concatenate(sampled))

    def rows_at(positions):
        return rows.loc[positions]

    with log.timed("backtest") as logged:
        forward, window_rows, window_scores = out_of_time_backtest(frame, chosen, settings, horizon, rows_at,
                                                                   backtest)
        logged.update({k: forward[k] for k in ("available", "roc_auc", "scored_window") if k in forward})
    train_rows, holdout = rows_at(train_sample), rows_at(holdout_sample)  # holdout: the judged rows
    with log.timed("fit", n_train=len(train_rows), n_test=len(holdout)):
        model = make_model(settings, chosen)
        model.fit(train_rows[features], train_rows["label"].to_numpy())
    holdout_scores = model.predict_proba(holdout[features])[:, 1]
    metrics: dict[str, Any] = evaluate(model, holdout, features)
    window = "out_of_time" if guardrails.promote_on == "out_of_time" and forward["available"] else "holdout"
    promotion_figures = {"roc_auc": forward["roc_auc"] if window == "out_of_time" else metrics["roc_auc"],
                         "n_train": int(len(train_rows))}
    metrics.update({
        "n_train": int(len(train_rows)), "n_test": int(len(holdout)),
        "n_train_available": int(len(train_positions)), "n_test_available": int(len(holdout_positions)),
        "positive_rate_train": float(train_rows["label"].mean()), "positive_rate_test": float(holdout["label"].mean()),
        "training_snapshot": ctx.snapshot_date.isoformat(),
        "feature_dates": sorted({str(d)[:10] for d in frame["snapshot_date"].unique()}),
        "label": ctx.pipeline.label.model_dump(), "features": features,
        "features_absent": {feature: f"needs {', '.join(columns)}, which the provider does not map"
                            for feature, columns in chosen.absent.items()},
        "model_settings": settings.model_dump(),
        "library_versions": library_versions(),
        "figures": {
            "out_of_time": "ROC AUC of a model fitted on the earlier windows only, on the latest labelled window: "
                           "how well it would have predicted what then happened",
            "holdout": "ROC AUC on customers held out of the same training windows (roc_auc, accuracy, pr_auc, "
                       "brier at the top level)"},
        "out_of_time": forward,
        "holdout_lift": lift_table(holdout["label"].to_numpy(), holdout_scores),
        "holdout_reliability": reliability_curve(holdout["label"].to_numpy(), holdout_scores),
        "coefficients": standardized_coefficients(model),
    })
    champion = _champion_on(ctx, features, forward, window_rows, holdout, metrics["roc_auc"])
    status, reason = decide_promotion(promotion_figures, guardrails, champion, window)
    if guardrails.promote_on == "out_of_time" and window == "holdout":
        reason += f" (no out-of-time window: {forward['reason']})"
    judged = (window_rows["label"].to_numpy(), window_scores) if window == "out_of_time" else \
        (holdout["label"].to_numpy(), holdout_scores)
    warning = judgement_warning("out-of-time window" if window == "out_of_time" else "customer holdout", *judged)
    metrics["judgement_warnings"] = [warning] if warning else []
    if warning:
        reason += f". WARNING: {warning}"
        log.event("window_too_small_to_judge", level="WARNING", detail=warning)

    store = ctx.settings.model_store(ctx.provider.provider_id)
    staging = new_staging_dir(store / "new_model")  # the model's store folder, built under a hidden name
    try:
        joblib.dump(model, staging / "model.pkl")
        profile = training_profile(train_rows, chosen.numeric, chosen.categorical)
        (staging / TRAINING_PROFILE).write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
        sha = sha256_of_file(staging / "model.pkl")
        # The run is part of the id: retraining identical bytes in another run (say, under other guardrails)
        # is a new registry decision and must not overwrite the earlier one; a retry of the same run is idempotent.
        run_tag = hashlib.sha256(ctx.run_id.encode()).hexdigest()[:8]
        model_id = (f"{ctx.provider.provider_id}__{ctx.pipeline.pipeline_id}__{ctx.snapshot_date:%Y%m%d}__"
                    f"{sha[:10]}{run_tag}")
        store_dir = publish_dir(staging, store / model_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        twin = approved_twin(warehouse, ctx.settings, ctx.pipeline.pipeline_id, sha, model_id)
    if twin is not None and status == "approved":
        # retraining a snapshot on the same data gives the same bytes: the registry already approved this model
        status, reason = "identical", (f"the same model, byte for byte, as {twin.model_id} (approved, trained on "
                                       f"{twin.training_snapshot}), which stays in force; nothing new to approve")
    promotion = {"status": status, "reason": reason, "champion": champion, "window": window,
                 "roc_auc": promotion_figures["roc_auc"]}
    metrics.update({"model_id": model_id, "promotion": promotion})
    entry = {
        "model_id": model_id, "pipeline": ctx.pipeline.pipeline_id,
        "training_snapshot": ctx.snapshot_date.isoformat(), "trained_in_run": ctx.run_id, "status": status,
        "reason": reason, "roc_auc": promotion_figures["roc_auc"],
        "champion_model_id": champion["model_id"] if champion else None,
        "champion_roc_auc": champion.get("roc_auc_on_window") if champion else None,
        "sha256": sha, "path": store_relative_path(model_id), "features": json.dumps(features),
        "registered_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")}
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse, transaction(warehouse):
        register_model(warehouse, ctx.settings, entry)
    crash_point("train.registered", ctx.dag_id, ctx.run_dir)
    # Only what the registry holds gets a registry.json (which a rebuild re-registers), and the run folder shows
    # the model only once it is registered: a killed attempt leaves neither a decision nobody made nor a card.
    write_json_atomic(store_dir / REGISTRY_SIDECAR, entry)
    model_dir = ctx.run_dir / "model"

    def copy_model(folder: Path) -> None:
        for name in ("model.pkl", TRAINING_PROFILE):
            shutil.copy2(store_dir / name, folder / name)

    replace_dir_atomic(model_dir, copy_model)
    meta = {"model_id": model_id, "sha256": sha, "features": features, "training_snapshot": metrics["training_snapshot"],
            "store_path": str(store_dir / "model.pkl"), "metrics": {k: metrics[k] for k in
                                                                    ("roc_auc", "accuracy", "pr_auc", "brier")},
            "out_of_time_roc_auc": forward.get("roc_auc"), "promotion": promotion,
            "library_versions": metrics["library_versions"]}
    write_json_atomic(model_dir / "model_meta.json", meta)
    plot_roc_curve(holdout["label"].to_numpy(), holdout_scores, ctx.run_dir / "roc_curve.png", title=model_id)
    plot_reliability(forward.get("reliability") or metrics["holdout_reliability"], ctx.run_dir / "reliability.png",
                     title=("out-of-time window " + forward["scored_window"]) if forward["available"]
                     else "customer holdout")
    write_json_atomic(ctx.run_dir / "metrics.json", metrics)  # last: the run tab's model card
    log.event("model_registered", level="INFO" if status == "approved" else "WARNING", model_id=model_id,
              status=status, reason=reason, roc_auc=round(metrics["roc_auc"], 4),
              out_of_time_roc_auc=round(forward["roc_auc"], 4) if forward["available"] else None)
    return {"model_id": model_id, "status": status, "reason": reason, "roc_auc": metrics["roc_auc"],
            "out_of_time_roc_auc": forward.get("roc_auc")}
