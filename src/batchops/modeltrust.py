"""What tells a user whether to trust a model, as pure functions over arrays and frames (no Airflow,
no warehouse): metrics, a lift table, a reliability curve, the out-of-time split, the training
profile a model keeps, and the drift of a scoring snapshot against it (PSI and null shares)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np

PSI_FLOOR = 1e-4  # a share of 0 in one side would make PSI infinite; this is "practically never"
MAX_CATEGORIES = 30


def classification_metrics(labels, scores) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score, accuracy at 0.5, log loss; AUCs are NaN with one class."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    both = len(np.unique(labels)) == 2
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(labels, scores)) if both else float("nan"),
        "brier": float(brier_score_loss(labels, scores)),
        "accuracy": float(accuracy_score(labels, scores >= 0.5)),
        "log_loss": float(log_loss(labels, scores, labels=[0, 1])),
        "n": int(len(labels)), "positive_rate": float(labels.mean()) if len(labels) else float("nan"),
    }


MIN_CLASS_ROWS_TO_JUDGE = 50
MAX_AUC_UNCERTAINTY = 0.05


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of a ROC AUC measured on this many positives and negatives."""
    if positives < 1 or negatives < 1 or math.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) \
        / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def judgement_warning(where: str, labels, scores) -> str | None:
    """Why the rows a model is judged on cannot judge it, or None: every row scored alike (identical features),
    fewer than MIN_CLASS_ROWS_TO_JUDGE rows of a class, or so few rows that the ROC AUC's 95% interval is wider
    than +-MAX_AUC_UNCERTAINTY (Hanley & McNeil)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if len(labels) and len(np.unique(scores)) == 1:
        return (f"all {len(labels)} rows of the {where} got the same score (their features do not differ): its ROC "
                "AUC of 0.5 says nothing about the model")
    auc = classification_metrics(labels, scores)["roc_auc"] if positives and negatives else float("nan")
    spread = 1.96 * auc_standard_error(auc, positives, negatives)
    if min(positives, negatives) < MIN_CLASS_ROWS_TO_JUDGE or not spread <= MAX_AUC_UNCERTAINTY:
        chance = f"; its ROC AUC could be off by {spread:.2f} either way by chance" if not math.isnan(spread) else ""
        return (f"the {where} has {len(labels)} rows, {positives} positive and {negatives} negative: too few to judge "
                f"a model{chance} (at least {MIN_CLASS_ROWS_TO_JUDGE} of each class and an interval within "
                f"+-{MAX_AUC_UNCERTAINTY} are needed)")
    return None


def _ranked_groups(scores, bins: int) -> list[np.ndarray]:
    """Indexes split into `bins` groups of (nearly) equal size by descending score; ties broken by
    position, so every row is in exactly one group."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return [group for group in np.array_split(order, min(bins, len(order))) if len(group)]


def lift_table(labels, scores, bins: int = 10) -> list[dict[str, Any]]:
    """Deciles by score, highest first: customers, positives, rate, lift over the overall rate, and the
    cumulative share of all positives captured down to this decile. Customers add up to the population."""
    labels = np.asarray(labels)
    total_positives = int(labels.sum())
    overall = total_positives / len(labels) if len(labels) else 0.0
    table, captured = [], 0
    for number, group in enumerate(_ranked_groups(scores, bins), start=1):
        positives = int(labels[group].sum())
        captured += positives
        rate = positives / len(group)
        table.append({"decile": number, "customers": int(len(group)), "positives": positives,
                      "rate": round(rate, 6), "lift": round(rate / overall, 4) if overall else None,
                      "cumulative_capture": round(captured / total_positives, 6) if total_positives else None,
                      "min_score": float(np.asarray(scores)[group].min())})
    return table


def reliability_curve(labels, scores, bins: int = 10) -> list[dict[str, Any]]:
    """Predicted against observed rate per score decile (lowest first): a calibrated model's points lie
    on the diagonal."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    curve = []
    for group in reversed(_ranked_groups(scores, bins)):
        curve.append({"customers": int(len(group)), "mean_predicted": round(float(scores[group].mean()), 6),
                      "observed_rate": round(float(labels[group].mean()), 6)})
    return curve


def out_of_time_positions(frame, horizon_days: int):
    """(past, latest, latest_date) as row positions of `frame`: `latest` is the most recent labelled window
    (features at T - h, label from [T - h, T)); `past` holds the windows whose label period ends before it
    starts, so nothing the backtest model learns from overlaps what it is judged on. None when there is no
    such past window. Positions, not frames: copying millions of rows twice cost seconds and memory."""
    dates = frame["snapshot_date"].to_numpy()
    distinct = np.unique(dates)
    if len(distinct) < 2:
        return None
    latest = distinct[-1]
    cutoff = latest - np.timedelta64(horizon_days, "D") if isinstance(latest, np.datetime64) else \
        latest - timedelta(days=horizon_days)
    past = np.flatnonzero(dates <= cutoff)
    if not len(past):
        return None
    return past, np.flatnonzero(dates == latest), latest


# ---------------------------------------------------------------- drift


def _numeric_values(series) -> np.ndarray:
    values = np.asarray(series, dtype=float)
    return values[~np.isnan(values)]


def training_profile(frame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """Per feature, what the model learned from: for a number the decile edges of its training values and
    the share in each bin, for a category the share of each value; and the share of nulls."""
    profile: dict[str, Any] = {"rows": int(len(frame)), "features": {}}
    for name in numeric:
        values = _numeric_values(frame[name])
        edges = sorted(set(np.quantile(values, np.linspace(0.1, 0.9, 9)).round(12).tolist())) if len(values) else []
        profile["features"][name] = {"kind": "numeric", "edges": edges, "shares": _bin_shares(values, edges),
                                     "null_share": round(1 - len(values) / len(frame), 6) if len(frame) else 0.0,
                                     "mean": float(values.mean()) if len(values) else None}
    for name in categorical:
        column = frame[name]
        present = column.dropna().astype(str)
        counts = present.value_counts()
        shares = {str(k): round(v / len(present), 6) for k, v in counts.head(MAX_CATEGORIES).items()} if len(present) else {}
        profile["features"][name] = {"kind": "categorical", "shares": shares,
                                     "null_share": round(1 - len(present) / len(frame), 6) if len(frame) else 0.0}
    return profile


def _bin_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of values in (-inf, e1], (e1, e2], ..., (ek, inf)."""
    if not len(values):
        return [0.0] * (len(edges) + 1)
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)
    return [round(float(c) / len(values), 6) for c in counts]


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return round(total, 6)


def drift_report(profile: dict[str, Any], frame, max_psi: float, max_null_change: float,
                 action: str) -> dict[str, Any]:
    """Each feature of the scoring snapshot against the model's training profile. verdict: 'ok', or
    `action` ('block' | 'warn') when any feature's PSI exceeds max_psi or its null share moved by more
    than max_null_change."""
    features = []
    for name, learned in profile["features"].items():
        if name not in frame:
            features.append({"feature": name, "psi": None, "drifted": True, "why": "missing from the snapshot"})
            continue
        column = frame[name]
        null_share = float(column.isna().mean()) if len(column) else 0.0
        if learned["kind"] == "numeric":
            values = _numeric_values(column)
            shares = _bin_shares(values, learned["edges"])
            value = psi(learned["shares"], shares)
            detail = {"mean_training": learned.get("mean"), "mean_now": float(values.mean()) if len(values) else None}
        else:
            # counted before the values become text: astype(str) of a million rows took 0.4 s of each scoring run
            counts = column.value_counts(dropna=True)
            counts = counts.groupby(counts.index.astype(str), observed=True).sum()
            present = int(counts.sum())
            known = list(learned["shares"])
            now = [float(counts.get(k, 0)) / present if present else 0.0 for k in known]
            expected = [learned["shares"][k] for k in known]
            other_now, other_then = max(0.0, 1 - sum(now)), max(0.0, 1 - sum(expected))
            value = psi(expected + [other_then], now + [other_now])
            detail = {}
        reasons = []
        if value > max_psi:
            reasons.append(f"PSI {value:.3f} > {max_psi}")
        moved = abs(null_share - learned["null_share"])
        if moved > max_null_change:
            reasons.append(f"null share {learned['null_share']:.1%} -> {null_share:.1%}")
        features.append({"feature": name, "psi": value, "null_share_training": learned["null_share"],
                         "null_share_now": round(null_share, 6), "drifted": bool(reasons), "why": "; ".join(reasons),
                         **detail})
    drifted = [f for f in features if f["drifted"]]
    verdict = action if drifted else "ok"
    summary = ("no feature drifted" if not drifted else
               f"{len(drifted)} feature(s) drifted from the model's training data: "
               + ", ".join(f"{f['feature']} ({f['why']})" for f in drifted[:8]))
    return {"verdict": verdict, "action": action, "max_psi": max_psi, "max_null_change": max_null_change,
            "rows": int(len(frame)), "training_rows": profile.get("rows"), "summary": summary,
            "features": sorted(features, key=lambda f: -(f["psi"] if f["psi"] is not None else math.inf))}


def standardized_coefficients(model) -> list[dict[str, Any]]:
    """The logistic regression's coefficients per input after scaling (numbers are standardised, so their
    sizes compare), largest effect first; [] when the model is not the expected pipeline."""
    base = model
    if hasattr(model, "calibrated_classifiers_"):
        base = model.calibrated_classifiers_[0].estimator
    try:
        names = base[:-1].get_feature_names_out()
        weights = base[-1].coef_[0]
    except (AttributeError, TypeError, IndexError, ValueError):
        return []
    rows = [{"input": str(n).split("__", 1)[-1], "coefficient": round(float(w), 6)} for n, w in zip(names, weights,
                                                                                                    strict=True)]
    return sorted(rows, key=lambda r: -abs(r["coefficient"]))
