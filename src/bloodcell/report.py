"""Pictures and a readable `report.md` for an evaluation, so a reader can tell how good the model
is and how sure to be of it: headline accuracy with its interval, per-class table, the clinical
sensitivity/specificity, calibration, data provenance and the training settings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.labels import DISPLAY_NAMES

CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"
REPORT_MD = "report.md"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _names(labels: Sequence[str]) -> list[str]:
    return [DISPLAY_NAMES.get(lab, lab).replace("Malignant ", "") for lab in labels]


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], out: Path) -> Path:
    """Counts and row-normalised (recall per true class) confusion matrices side by side."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = _names(labels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, mat, title, fmt in (
        (axes[0], cm, "counts", "{:.0f}"),
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
    """One-vs-rest ROC curve per class, with its AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, name in enumerate(_names(labels)):
        pos = np.asarray(y_true) == i
        if not 0 < pos.sum() < len(pos):
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(pos, probs[:, i]):.3f})")
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


def plot_reliability(bins: Sequence[dict[str, float]], ece: float, out: Path) -> Path:
    """Accuracy vs confidence per bin (bars) against the diagonal, with image counts below."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(5.5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    full = [b for b in bins if b["count"]]
    ax.bar(
        [b["lower"] for b in full],
        [b["accuracy"] for b in full],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.8,
        label="accuracy in bin",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set(ylabel="accuracy", title=f"reliability (ECE {ece:.3f})", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    ax2.bar(
        [b["lower"] for b in bins],
        [b["count"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        color="grey",
    )
    ax2.set(xlabel="confidence (top-class probability)", ylabel="images")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(ci: Sequence[float] | None, pct: bool = True) -> str:
    if not ci:
        return "n/a"
    return f"{_pct(ci[0])}–{_pct(ci[1])}" if pct else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _headline(m: dict[str, Any]) -> list[str]:
    lo, hi = m["ci95"]["accuracy"]
    b = m["bootstrap"]
    return [
        f"**Accuracy {_pct(m['accuracy'])}** (95% CI {_ci([lo, hi])}) on {m['n']} images; "
        f"macro-F1 {m['macro_f1']:.3f} (95% CI {_ci(m['ci95']['macro_f1'], pct=False)}).",
        "",
        f"What the interval means: the {m['n']} images were resampled with replacement "
        f"{b['resamples']} times (seed {b['seed']}); 95% of the resampled accuracies fall in "
        "this range. It is how much the figure could move with another set of the same size "
        "from the same source. With this few images, differences between models smaller than "
        "the interval are not evidence that one is better. It says nothing about other "
        "hospitals, scanners or stains.",
        f"Wilson score interval for the same accuracy: {_ci(m['ci95'].get('accuracy_wilson'))}"
        + (" (use this one here: a bootstrap cannot widen a perfect score)." if lo == hi else "."),
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_pct(m['accuracy'])} ({_ci(m['ci95']['accuracy'])}) |",
        f"| macro-F1 | {m['macro_f1']:.3f} ({_ci(m['ci95']['macro_f1'], pct=False)}) |",
        f"| balanced accuracy | {_pct(m['balanced_accuracy'])} |",
        f"| Cohen's kappa | {m['cohen_kappa']:.3f} |",
        f"| ROC-AUC (macro, one-vs-rest) | {_fmt(m['roc_auc']['macro'])} |",
        f"| expected calibration error | {m['ece']:.3f} |",
    ]


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _per_class(m: dict[str, Any]) -> list[str]:
    lines = ["| class | precision | recall | F1 | ROC-AUC | support |", "|---|---|---|---|---|---|"]
    for lab, r in m["per_class"].items():
        auc = m["roc_auc"]["per_class"].get(lab)
        lines.append(
            f"| {DISPLAY_NAMES.get(lab, lab)} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {_fmt(auc)} | {r['support']} |"
        )
    return lines


def _clinical(m: dict[str, Any]) -> list[str]:
    c = m["clinical"]
    return [
        "Malignant (Early Pre-B, Pre-B or Pro-B) is the positive class; a prediction counts as "
        "malignant when its top class is a malignant one.",
        "",
        f"- **Sensitivity** (malignant found): {_pct(c['sensitivity'])} "
        f"(95% Wilson CI {_ci(c['sensitivity_ci'])}); {c['fn']} malignant image(s) called benign.",
        f"- **Specificity** (benign cleared): {_pct(c['specificity'])} "
        f"(95% Wilson CI {_ci(c['specificity_ci'])}); {c['fp']} benign image(s) called malignant.",
        f"- TP {c['tp']}, FN {c['fn']}, TN {c['tn']}, FP {c['fp']}.",
    ]


def _calibration(m: dict[str, Any]) -> list[str]:
    return [
        f"Expected calibration error {m['ece']:.3f} ({len(m['calibration_bins'])} equal-width "
        "confidence bins): the average gap between how confident the model is and how often it "
        f"is right. Temperature applied: {m.get('temperature', 1.0):.3f} "
        "(1.0 = uncalibrated; `bloodcell calibrate` fits it on the val split).",
        "",
        f"![reliability diagram]({RELIABILITY_PNG})",
    ]


def _provenance(m: dict[str, Any]) -> list[str]:
    d = m.get("data", {})
    lines = [
        f"- manifest: `{d.get('manifest')}`",
        f"- manifest sha256: `{d.get('manifest_sha256')}`"
        + (
            ""
            if d.get("matches_training_manifest", True)
            else " — **differs from the manifest the model was trained on**"
        ),
        f"- data root: `{d.get('data_root')}`",
    ]
    counts = d.get("counts")
    if counts:
        splits = list(counts)
        labels = list(next(iter(counts.values())))
        lines += ["", "| class | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
        for lab in labels:
            cells = " | ".join(str(counts[s][lab]) for s in splits)
            lines.append(f"| {DISPLAY_NAMES.get(lab, lab)} | {cells} |")
        totals = " | ".join(str(sum(counts[s].values())) for s in splits)
        lines.append(f"| total | {totals} |")
    return lines


def _model(m: dict[str, Any], config: dict[str, Any]) -> list[str]:
    training = config.get("training", {})
    return [
        f"- model directory: `{m.get('model_dir')}`; architecture `{config.get('architecture')}`",
        f"- preprocessing: `{json.dumps(config.get('preprocess', {}))}`",
        f"- library versions: `{json.dumps(config.get('versions', {}))}`",
        "",
        "Training settings:",
        "",
        "```json",
        json.dumps(training, indent=2, sort_keys=True),
        "```",
    ]


def write_eval_report(
    metrics: dict[str, Any],
    y_true: np.ndarray,
    probs: np.ndarray,
    out_dir: str | Path,
    model_config: dict[str, Any] | None = None,
) -> Path:
    """Write the three PNGs and `report.md` (linking them) into `out_dir`; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = metrics["labels"]
    plot_confusion(metrics["confusion_matrix"], labels, out / CONFUSION_PNG)
    plot_roc(np.asarray(y_true), np.asarray(probs), labels, out / ROC_PNG)
    plot_reliability(metrics["calibration_bins"], metrics["ece"], out / RELIABILITY_PNG)
    split = metrics.get("split", "?")
    sections: list[tuple[str, list[str]]] = [
        ("Headline", _headline(metrics)),
        ("Per class", _per_class(metrics)),
        ("Confusion matrix", [f"![confusion matrix]({CONFUSION_PNG})"]),
        ("Clinical question: malignant vs benign", _clinical(metrics)),
        ("ROC curves", [f"![ROC curves]({ROC_PNG})"]),
        ("Calibration", _calibration(metrics)),
        ("Data provenance", _provenance(metrics)),
        ("Model and training", _model(metrics, model_config or {})),
    ]
    text = [f"# Evaluation on the {split} split", ""]
    for title, lines in sections:
        text += [f"## {title}", "", *lines, ""]
    path = out / REPORT_MD
    path.write_text("\n".join(text))
    return path


def write_run_report(
    out_dir: str | Path, results: dict[str, dict[str, Any]], extra: list[str]
) -> Path:
    """A top-level `report.md` for `bloodcell run`: one line per split, links to the details."""
    out = Path(out_dir)
    lines = [
        "# bloodcell run",
        "",
        "| split | n | accuracy (95% CI) | macro-F1 (95% CI) | "
        "sensitivity | specificity | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, m in results.items():
        c = m["clinical"]
        lines.append(
            f"| {split} | {m['n']} | {_pct(m['accuracy'])} ({_ci(m['ci95']['accuracy'])}) | "
            f"{m['macro_f1']:.3f} ({_ci(m['ci95']['macro_f1'], pct=False)}) | "
            f"{_pct(c['sensitivity'])} | {_pct(c['specificity'])} | "
            f"[eval/{split}/report.md](eval/{split}/report.md) |"
        )
    lines += ["", *extra, ""]
    path = out / REPORT_MD
    path.write_text("\n".join(lines))
    return path
