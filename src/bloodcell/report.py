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
from bloodcell.metrics import roc_auc
from bloodcell.models.ood import BLANK_SCORE
from bloodcell.records import ModelConfig, SplitMetrics
from bloodcell.run_dir import EVAL_DIR, REPORT_MD

CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"


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
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = short_names(labels)
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


def plot_reliability(bins: Sequence[dict[str, float]], ece: float, out: Path) -> Path:
    """Accuracy vs confidence per bin (bars) against the diagonal, with image counts below."""
    plt = pyplot()
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


def plot_ood_scores(result: dict[str, Any], out: Path) -> Path:
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


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal ('n/a' for None)."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def ci_range(ci: Sequence[float] | None, percent: bool = True) -> str:
    """'95.6%–98.8%' (or '0.953–0.988' with `percent=False`); 'n/a' without an interval."""
    if not ci:
        return "n/a"
    return f"{pct(ci[0])}–{pct(ci[1])}" if percent else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _headline(m: SplitMetrics) -> list[str]:
    lo, hi = m["ci95"]["accuracy"]
    b = m["bootstrap"]
    return [
        f"**Accuracy {pct(m['accuracy'])}** (95% CI {ci_range([lo, hi])}) on {m['n']} images; "
        f"macro-F1 {m['macro_f1']:.3f} (95% CI {ci_range(m['ci95']['macro_f1'], percent=False)}).",
        "",
        f"What the interval means: the {m['n']} images were resampled with replacement "
        f"{b['resamples']} times (seed {b['seed']}); 95% of the resampled accuracies fall in "
        "this range. It is how much the figure could move with another set of the same size "
        "from the same source. With this few images, differences between models smaller than "
        "the interval are not evidence that one is better. It says nothing about other "
        "hospitals, scanners or stains.",
        f"Wilson score interval for the same accuracy: {ci_range(m['ci95'].get('accuracy_wilson'))}"
        + (" (use this one here: a bootstrap cannot widen a perfect score)." if lo == hi else "."),
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {pct(m['accuracy'])} ({ci_range(m['ci95']['accuracy'])}) |",
        f"| macro-F1 | {m['macro_f1']:.3f} ({ci_range(m['ci95']['macro_f1'], percent=False)}) |",
        f"| balanced accuracy | {pct(m['balanced_accuracy'])} |",
        f"| Cohen's kappa | {m['cohen_kappa']:.3f} |",
        f"| ROC-AUC (macro, one-vs-rest) | {_fmt(m['roc_auc']['macro'])} |",
        f"| expected calibration error | {m['ece']:.3f} |",
    ]


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _per_class(m: SplitMetrics) -> list[str]:
    lines = ["| class | precision | recall | F1 | ROC-AUC | support |", "|---|---|---|---|---|---|"]
    for lab, r in m["per_class"].items():
        auc = m["roc_auc"]["per_class"].get(lab)
        lines.append(
            f"| {DISPLAY_NAMES.get(lab, lab)} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {_fmt(auc)} | {r['support']} |"
        )
    return lines


def _clinical(m: SplitMetrics) -> list[str]:
    c = m["clinical"]
    return [
        "Malignant (Early Pre-B, Pre-B or Pro-B) is the positive class; a prediction counts as "
        "malignant when its top class is a malignant one.",
        "",
        f"- **Sensitivity** (malignant found): {pct(c['sensitivity'])} "
        f"(95% Wilson CI {ci_range(c['sensitivity_ci'])}); "
        f"{c['fn']} malignant image(s) called benign.",
        f"- **Specificity** (benign cleared): {pct(c['specificity'])} "
        f"(95% Wilson CI {ci_range(c['specificity_ci'])}); "
        f"{c['fp']} benign image(s) called malignant.",
        f"- TP {c['tp']}, FN {c['fn']}, TN {c['tn']}, FP {c['fp']}.",
    ]


def _calibration(m: SplitMetrics) -> list[str]:
    return [
        f"Expected calibration error {m['ece']:.3f} ({len(m['calibration_bins'])} equal-width "
        "confidence bins): the average gap between how confident the model is and how often it "
        f"is right. Temperature applied: {m.get('temperature', 1.0):.3f} "
        "(1.0 = uncalibrated; `bloodcell calibrate` fits it on the val split).",
        "",
        f"![reliability diagram]({RELIABILITY_PNG})",
    ]


def scope_lines(m: SplitMetrics) -> list[str]:
    """The out-of-scope detector on this split: how many in-scope images it refused, which."""
    s = m.get("out_of_scope")
    if not s:
        return ["This model has no out-of-scope detector (saved before it existed): retrain it."]
    lines = [
        f"The detector refused **{s['flagged']} of {s['n']}** images of this split "
        f"({pct(s['flagged_rate'])}, 95% Wilson CI {ci_range(s['flagged_ci95'])}) as unlike the "
        f"training smears (out-of-scope score above {s['threshold']:.4f}, the threshold that keeps "
        f"{pct(s['acceptance'])} of validation images). These images are in scope: every one "
        "refused is a missed answer, not a caught error.",
    ]
    if s["flagged_paths"]:
        lines += ["", "Refused: " + ", ".join(f"`{p}`" for p in s["flagged_paths"])]
    return lines


def conformal_lines(m: SplitMetrics) -> list[str]:
    """Coverage and set size of the conformal prediction sets at each reported level."""
    c = m.get("prediction_sets")
    if not c:
        return ["This model has no prediction sets: run `bloodcell calibrate RUN`."]
    lines = [
        f"Split conformal prediction sets (fitted on the validation split; the model's default "
        f"coverage is {c['default_coverage']:.0%}). A set holds every class the image still "
        "fits; coverage is how often it holds the true class (Wilson 95% CI).",
        "",
        "| target coverage | coverage on this split | mean set size | sets of 2+ classes | which |",
        "|---|---|---|---|---|",
    ]
    for row in c["levels"].values():
        which = "; ".join(f"{k} ({v})" for k, v in row["multi_class_sets"].items()) or "–"
        lines.append(
            f"| {pct(row['coverage_target'])} | {pct(row['coverage'])} "
            f"({ci_range(row['coverage_ci95'])}) | {row['mean_set_size']:.3f} | "
            f"{pct(row['multi_class_share'])} | {which} |"
        )
    return lines


def _provenance(m: SplitMetrics) -> list[str]:
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


def _model(m: SplitMetrics, config: ModelConfig) -> list[str]:
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
    metrics: SplitMetrics,
    y_true: np.ndarray,
    probs: np.ndarray,
    out_dir: str | Path,
    model_config: ModelConfig | None = None,
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
        ("Out of scope", scope_lines(metrics)),
        ("Prediction sets", conformal_lines(metrics)),
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
    out_dir: str | Path, results: dict[str, SplitMetrics], extra: list[str]
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
        link = f"{EVAL_DIR}/{split}/{REPORT_MD}"
        lines.append(
            f"| {split} | {m['n']} | {pct(m['accuracy'])} ({ci_range(m['ci95']['accuracy'])}) | "
            f"{m['macro_f1']:.3f} ({ci_range(m['ci95']['macro_f1'], percent=False)}) | "
            f"{pct(c['sensitivity'])} | {pct(c['specificity'])} | "
            f"[{link}]({link}) |"
        )
    lines += ["", *extra, ""]
    path = out / REPORT_MD
    path.write_text("\n".join(lines))
    return path


def upsert_section(path: Path, title: str, lines: Sequence[str]) -> Path:
    """Put `## title` into a markdown file, replacing an earlier one; before the data
    provenance section when there is one, else at the end (creating the file if needed)."""
    text = path.read_text() if path.is_file() else "# Robustness\n"
    block = "\n".join([f"## {title}", "", *lines, "", ""])
    heading = f"\n## {title}\n"
    if heading in text:
        start = text.index(heading) + 1
        nxt = text.find("\n## ", start)
        text = text[:start] + (text[nxt + 1 :] if nxt >= 0 else "")
    anchor = text.find("\n## Data provenance\n")
    if anchor >= 0:
        text = text[: anchor + 1] + block + text[anchor + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text.rstrip("\n") + "\n")
    return path
