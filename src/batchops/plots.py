"""PNG plots for the run folder (ROC curve at train, score histogram at score)."""

from __future__ import annotations

from pathlib import Path

from batchops.artifacts import write_with


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(5, 4), dpi=100)


def plot_roc_curve(labels, scores, target: Path, title: str) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt, figure = _figure()
    false_positive, true_positive, _ = roc_curve(labels, scores)
    axes = figure.add_subplot()
    axes.plot(false_positive, true_positive, label=f"AUC {roc_auc_score(labels, scores):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title[:60])
    axes.title.set_fontsize(8)
    axes.legend(loc="lower right")
    figure.tight_layout()
    write_with(target, lambda temp: figure.savefig(temp, format="png"))
    plt.close(figure)
    return target


def plot_score_histogram(scores, target: Path, title: str) -> Path:
    plt, figure = _figure()
    axes = figure.add_subplot()
    axes.hist(scores, bins=40, range=(0, 1), color="#3b6ea5")
    axes.set(xlabel="score", ylabel="customers", title=title[:60])
    axes.title.set_fontsize(8)
    figure.tight_layout()
    write_with(target, lambda temp: figure.savefig(temp, format="png"))
    plt.close(figure)
    return target
