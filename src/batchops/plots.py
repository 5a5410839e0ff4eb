"""PNG plots for the run folder (ROC curve at train, score histogram at score)."""

from __future__ import annotations

from pathlib import Path

from batchops.artifacts import write_with


def _figure():
    """A figure drawn by the Agg canvas directly: pyplot is not imported (a third of matplotlib's import time,
    paid by every scoring run) and keeps no global figure list to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, axes, target: Path, legend: str | None = None) -> Path:
    """Small title, optional legend, tight layout, written atomically."""
    axes.title.set_fontsize(8)
    if legend:
        axes.legend(loc=legend, fontsize=7)
    figure.tight_layout()
    write_with(target, lambda temp: figure.savefig(temp, format="png"))
    return target


def plot_roc_curve(labels, scores, target: Path, title: str) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    figure = _figure()
    false_positive, true_positive, _ = roc_curve(labels, scores)
    axes = figure.add_subplot()
    axes.plot(false_positive, true_positive, label=f"AUC {roc_auc_score(labels, scores):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title[:60])
    return _save(figure, axes, target, legend="lower right")


def plot_score_histogram(scores, target: Path, title: str) -> Path:
    figure = _figure()
    axes = figure.add_subplot()
    axes.hist(scores, bins=40, range=(0, 1), color="#3b6ea5")
    axes.set(xlabel="score", ylabel="customers", title=title[:60])
    return _save(figure, axes, target)


def plot_reliability(curve: list[dict], target: Path, title: str) -> Path:
    """Predicted against observed rate per score decile; the diagonal is a calibrated model."""
    figure = _figure()
    axes = figure.add_subplot()
    predicted = [point["mean_predicted"] for point in curve]
    observed = [point["observed_rate"] for point in curve]
    top = max(predicted + observed + [0.05]) * 1.05
    axes.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="calibrated")
    axes.plot(predicted, observed, marker="o", color="#3b6ea5", label="model (score deciles)")
    axes.set(xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, top), ylim=(0, top),
             title=f"reliability, {title}"[:60])
    return _save(figure, axes, target, legend="upper left")


def plot_drift(report: dict, target: Path) -> Path:
    """PSI per feature against the threshold, drifted features in red."""
    figure = _figure()
    axes = figure.add_subplot()
    rows = [f for f in report["features"] if f["psi"] is not None][:20][::-1]
    names = [f["feature"] for f in rows]
    values = [f["psi"] for f in rows]
    colours = ["#b03030" if f["drifted"] else "#3b6ea5" for f in rows]
    axes.barh(names, values, color=colours)
    axes.axvline(report["max_psi"], color="grey", linestyle="--", linewidth=1, label=f"max_psi {report['max_psi']}")
    axes.set(xlabel="population stability index", title=f"drift: {report['verdict']}"[:60])
    axes.tick_params(axis="y", labelsize=7)
    return _save(figure, axes, target, legend="lower right")
