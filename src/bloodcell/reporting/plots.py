"""The pictures every report draws, on matplotlib's file-only Agg backend: confusion matrix,
ROC curves, reliability diagram, out-of-scope score histograms. They take computed figures and
write PNGs; nothing here computes a metric beyond what a curve needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.evaluation.metrics import roc_auc
from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.scope_detector import BLANK_SCORE
from bloodcell.records import CalibrationBin, ScopeFoldersResult


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_names(labels: Sequence[str]) -> list[str]:
    """Display names without the shared "Malignant " prefix, for axes and table heads."""
    return [DISPLAY_NAMES.get(lab, lab).replace("Malignant ", "") for lab in labels]


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], out: Path) -> Path:
    """Counts and row-normalised (recall per true class) confusion matrices side by side."""
    plt = pyplot()
    counts = np.asarray(cm, dtype=float)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = short_names(labels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, mat, title, fmt in (
        (axes[0], counts, "counts", "{:.0f}"),
        (axes[1], norm, "row-normalised (share of each true class)", "{:.2f}"),
    ):
        ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() or 1)
        for i in range(len(names)):
            for j in range(len(names)):
                dark = mat[i, j] > 0.6 * (mat.max() or 1)
                ax.text(
                    j,
                    i,
                    fmt.format(mat[i, j]),
                    ha="center",
                    va="center",
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_roc(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], out: Path) -> Path:
    """One-vs-rest ROC curve per class, with its AUC (`metrics.roc_auc`) in the legend."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    aucs = roc_auc(np.asarray(y_true), probs, labels)["per_class"]
    for i, (lab, name) in enumerate(zip(labels, short_names(labels), strict=True)):
        if aucs[lab] is None:  # the class is absent, or alone
            continue
        fpr, tpr, _ = roc_curve(np.asarray(y_true) == i, probs[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[lab]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC, one class vs the rest",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_reliability(bins: Sequence[CalibrationBin], ece: float, out: Path) -> Path:
    """Accuracy vs confidence per bin (bars) against the diagonal, with image counts below."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(5.5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    full = [b for b in bins if b["count"]]
    _bin_bars(ax, full, [b["accuracy"] for b in full], width, alpha=0.8, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set(ylabel="accuracy", title=f"reliability (ECE {ece:.3f})", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    _bin_bars(ax2, bins, [b["count"] for b in bins], width, color="grey")
    ax2.set(xlabel="confidence (top-class probability)", ylabel="images")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _bin_bars(
    ax: Any, bins: Sequence[CalibrationBin], heights: Sequence[float], width: float, **style: Any
) -> None:
    """One bar per reliability bin, from its lower edge."""
    ax.bar(
        [b["lower"] for b in bins], heights, width=width, align="edge", edgecolor="black", **style
    )


def plot_scope_scores(result: ScopeFoldersResult, out: Path) -> Path:
    """Histograms of the out-of-scope score: the in-scope split and each folder, with the
    threshold, on one axis so the overlap (or its absence) is visible at a glance."""
    plt = pyplot()
    groups = [(f"in scope ({result['split']})", result["in_scope"]["scores"])]
    groups += [(Path(r["folder"]).name, r["scores"]) for r in result["folders"]]
    # Flat images score BLANK_SCORE; drawn, they would squeeze every other bar to one bin.
    groups = [(name, [v for v in scores if v < BLANK_SCORE]) for name, scores in groups]
    values = [v for _, scores in groups for v in scores]
    bins = np.linspace(min(values, default=0.0), max(values, default=1.0), 60)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, scores in groups:
        if scores:
            ax.hist(scores, bins=bins, alpha=0.55, density=True, label=f"{name} (n={len(scores)})")
    ax.axvline(result["threshold"], color="black", linestyle="--", label="threshold")
    ax.set_xlabel("out-of-scope score (0 = typical validation image, 1 = its 99th percentile)")
    ax.set_ylabel("density")
    ax.set_title("Out-of-scope scores: right of the line gets no class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
