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
from bloodcell.models.ood import BLANK_SCORE

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


def plot_ood_scores(result: dict[str, Any], out: Path) -> Path:
    """Histograms of the out-of-scope score: the in-scope split and each folder, with the
    threshold, on one axis so the overlap (or its absence) is visible at a glance."""
    plt = _plt()
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


def _headline(m: dict[str, Any]) -> list[str]:
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
        f"- **Sensitivity** (malignant found): {pct(c['sensitivity'])} "
        f"(95% Wilson CI {ci_range(c['sensitivity_ci'])}); "
        f"{c['fn']} malignant image(s) called benign.",
        f"- **Specificity** (benign cleared): {pct(c['specificity'])} "
        f"(95% Wilson CI {ci_range(c['specificity_ci'])}); "
        f"{c['fp']} benign image(s) called malignant.",
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


def scope_lines(m: dict[str, Any]) -> list[str]:
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


def conformal_lines(m: dict[str, Any]) -> list[str]:
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
            f"| {split} | {m['n']} | {pct(m['accuracy'])} ({ci_range(m['ci95']['accuracy'])}) | "
            f"{m['macro_f1']:.3f} ({ci_range(m['ci95']['macro_f1'], percent=False)}) | "
            f"{pct(c['sensitivity'])} | {pct(c['specificity'])} | "
            f"[eval/{split}/report.md](eval/{split}/report.md) |"
        )
    lines += ["", *extra, ""]
    path = out / REPORT_MD
    path.write_text("\n".join(lines))
    return path


# --- cross-validation ---------------------------------------------------------------------------

FOLDS_PNG = "folds.png"
PROTOCOLS_PNG = "protocols.png"
_SPREAD = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))


def _spread_values(m: dict[str, Any]) -> dict[str, tuple[float | None, list[float] | None]]:
    """metric name -> (value, 95% CI) for the fold-spread plot, all on a 0-1 scale."""
    c, ci = m["clinical"], m["ci95"]
    out = {name: (m[key], ci[key]) for key, name in _SPREAD}
    out["sensitivity"] = (c["sensitivity"], ci["sensitivity"])
    out["specificity"] = (c["specificity"], ci["specificity"])
    for lab, r in m["per_class"].items():
        out[f"recall {_names([lab])[0]}"] = (r["recall"], ci["recall"][lab])
    return out


def plot_fold_spread(cv: dict[str, Any], out: Path) -> Path:
    """Every fold's metrics as dots (one colour per seed) beside the pooled value and its
    interval (black), and each fold's ECE: how much the figure moves from fold to fold."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [5, 1.3]})
    rng = np.random.default_rng(0)
    names = list(_spread_values(cv["seeds"][0]["pooled"]))
    for si, seed in enumerate(cv["seeds"]):
        colour = f"C{si}"
        for fold in seed["folds"]:
            vals = _spread_values(fold)
            xs = np.arange(len(names)) - 0.25 + 0.1 * si + rng.uniform(-0.03, 0.03, len(names))
            ys = [100 * v if v is not None else np.nan for v, _ in (vals[n] for n in names)]
            ax.scatter(
                xs,
                ys,
                s=18,
                color=colour,
                alpha=0.8,
                label=f"folds, seed {seed['seed']}" if fold is seed["folds"][0] else None,
            )
            ax2.scatter(si + rng.uniform(-0.1, 0.1), fold["ece"], s=18, color=colour)
        pooled = _spread_values(seed["pooled"])
        for j, n in enumerate(names):
            v, ci = pooled[n]
            if v is None:
                continue
            err = [[100 * (v - ci[0])], [100 * (ci[1] - v)]] if ci else None
            ax.errorbar(
                j + 0.2 + 0.1 * si,
                100 * v,
                yerr=err,
                fmt="D",
                color=colour,
                mec="black",
                ms=6,
                capsize=3,
                label=f"pooled, seed {seed['seed']}, 95% CI (groups)" if j == 0 else None,
            )
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set(
        ylabel="% (macro-F1 x 100)",
        title=f"{len(cv['seeds'][0]['folds'])} folds: spread and pooled value",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax2.set_xticks(range(len(cv["seeds"])), [f"seed {s['seed']}" for s in cv["seeds"]])
    ax2.set(title="ECE per fold", ylim=(0, None), xlim=(-0.5, len(cv["seeds"]) - 0.5))
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell(m: dict[str, Any], key: str) -> str:
    """'98.6% (97.9–99.2%)' for a metric of `cv_metrics` with its group-bootstrap interval."""
    ci = m["ci95"]
    if key in ("sensitivity", "specificity"):
        return f"{pct(m['clinical'][key])} ({ci_range(ci[key])})"
    if key == "macro_f1":
        return f"{m[key]:.3f} ({ci_range(ci[key], percent=False)})"
    if key == "ece":
        return f"{m[key]:.3f} ({ci_range(ci[key], percent=False)})"
    return f"{pct(m[key])} ({ci_range(ci[key])})"


def _fold_tables(seed: dict[str, Any]) -> list[str]:
    keys = ("accuracy", "macro_f1", "sensitivity", "specificity", "ece")
    lines = [
        "| fold | test images | accuracy | macro-F1 | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(str(f["fold"]), f) for f in seed["folds"]] + [("**pooled**", seed["pooled"])]
    for name, m in rows:
        lines.append(f"| {name} | {m['n']} | " + " | ".join(_cell(m, k) for k in keys) + " |")
    labels = list(seed["pooled"]["per_class"])
    lines += [
        "",
        "Recall per class (95% CI):",
        "",
        "| fold | " + " | ".join(_names(labels)) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for name, m in rows:
        cells = [
            f"{pct(m['per_class'][lab]['recall'])} ({ci_range(m['ci95']['recall'][lab])})"
            for lab in labels
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    fa = seed["fold_accuracy"]
    lines += [
        "",
        f"Fold accuracy: mean {pct(fa['mean'])}, SD {100 * fa['sd']:.2f} points, "
        f"range {pct(fa['min'])}–{pct(fa['max'])}.",
    ]
    return lines


def write_cv_report(cv: dict[str, Any], out_dir: str | Path) -> Path:
    """`report.md` for a cross-validation (`bloodcell cv`): headline, per-fold tables, the
    pooled confusion matrix per seed and the folds' spread (PNGs beside it)."""
    out = Path(out_dir)
    s, d = cv["settings"], cv["data"]
    grouping = {
        "image": "none (random image-level folds: copies of an image can be in train and test)",
        "exact": "byte-identical copies kept in one fold",
        "near": "exact and near-duplicate copies kept in one fold",
        "block": f"blocks of {s['block_size']} consecutive file numbers of a class folder, "
        "and duplicates, kept in one fold",
    }[s["grouping"]]
    plot_fold_spread(cv, out / FOLDS_PNG)
    lines = [
        f"# Cross-validation: {s['folds']} folds, recipe `{cv['recipe']}`",
        "",
        f"{d['images']} images ({d['unreadable']} unreadable, left out), each tested once per "
        f"seed. Grouping: {grouping}. Folds are stratified by class; each fold's validation "
        f"part ({s['val_fraction']:.0%} of its training images per class) is taken from its "
        "training folds the same way"
        + (
            ", and fits the temperature (calibration) before the test part is predicted."
            if s["calibrate"]
            else "."
        ),
        "",
        f"Intervals: 95% percentile bootstrap over {d['ci_unit']} ({d['ci_groups']} groups, "
        "1000 resamples): every resample draws whole groups with replacement, because copies "
        "of one image are not independent evidence. They cover which images were tested, not "
        "the training's randomness (compare seeds for that).",
        "",
    ]
    for seed in cv["seeds"]:
        p = seed["pooled"]
        lines.append(
            f"- seed {seed['seed']}: **pooled accuracy {_cell(p, 'accuracy')}**, macro-F1 "
            f"{_cell(p, 'macro_f1')}, sensitivity {_cell(p, 'sensitivity')}, specificity "
            f"{_cell(p, 'specificity')}, ECE {_cell(p, 'ece')}"
        )
    if "over_seeds" in cv:
        o = cv["over_seeds"]
        lines += [
            "",
            f"Over {len(cv['seeds'])} seeds: pooled accuracy mean {pct(o['accuracy_mean'])}, "
            f"SD {100 * o['accuracy_sd']:.2f} points, range {pct(o['accuracy_min'])}–"
            f"{pct(o['accuracy_max'])}.",
        ]
    lines += ["", "## Spread over folds", "", f"![folds]({FOLDS_PNG})", ""]
    for seed in cv["seeds"]:
        png = f"confusion_matrix_seed-{seed['seed']}.png"
        plot_confusion(seed["pooled"]["confusion_matrix"], seed["pooled"]["labels"], out / png)
        lines += [f"## Seed {seed['seed']}", "", *_fold_tables(seed), "",
                  "Pooled confusion matrix (all out-of-fold predictions):", "",
                  f"![pooled confusion matrix]({png})", "", "Fold manifests:", ""]  # fmt: skip
        lines += [f"- `{f['manifest']}` sha256 `{f['manifest_sha256']}`" for f in seed["folds"]]
        lines.append("")
    lines += [
        "## Settings",
        "",
        "```json",
        json.dumps({"cv": s, "training": cv["config"]}, indent=2, sort_keys=True),
        "```",
        "",
    ]
    path = out / REPORT_MD
    path.write_text("\n".join(lines))
    return path


def plot_protocols(result: dict[str, Any], out: Path) -> Path:
    """Pooled accuracy of each protocol with its interval, and its difference from (a)."""
    plt = _plt()
    rows = result["protocols"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["protocol"] for r in rows]
    for ax_, key, ci_key, title in (
        (ax, "accuracy", "accuracy_ci95", "pooled out-of-fold accuracy"),
        (ax2, "difference_vs_image", "difference_ci95", "difference from (a), paired"),
    ):
        vals = np.array([100 * r[key] for r in rows])
        lo = np.array(
            [100 * r[ci_key][0] if r[ci_key] else v for r, v in zip(rows, vals, strict=True)]
        )
        hi = np.array(
            [100 * r[ci_key][1] if r[ci_key] else v for r, v in zip(rows, vals, strict=True)]
        )
        ax_.errorbar(range(len(rows)), vals, yerr=[vals - lo, hi - vals], fmt="o", capsize=4)
        ax_.set_xticks(range(len(rows)), names)
        ax_.set(title=title, ylabel="% points" if ax_ is ax2 else "%")
        ax_.grid(axis="y", alpha=0.3)
    ax2.axhline(0, color="black", lw=0.8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_protocol_report(result: dict[str, Any], out_dir: str | Path) -> Path:
    """`report.md` for `bloodcell cv --compare-protocols`: the protocols side by side."""
    out = Path(out_dir)
    plot_protocols(result, out / PROTOCOLS_PNG)
    b = result["bootstrap"]
    lines = [
        "# How much a leaky split overstates accuracy",
        "",
        f"The same recipe (`{result['recipe']}`), {result['folds']}-fold cross-validation, "
        f"seed(s) {', '.join(map(str, result['seeds']))}, on the same {result['images']} "
        "images under three protocols. Accuracy is pooled over all out-of-fold predictions "
        "(averaged over seeds).",
        "",
        "| protocol | pooled accuracy (95% CI) | difference vs (a) (95% CI) | macro-F1 | report |",
        "|---|---|---|---|---|",
    ]
    for r in result["protocols"]:
        diff = (
            "—"
            if r["protocol"] == "image"
            else (
                f"{100 * r['difference_vs_image']:+.2f} points "
                f"({100 * r['difference_ci95'][0]:+.2f} to {100 * r['difference_ci95'][1]:+.2f})"
            )
        )
        lines.append(
            f"| {r['description']} | {pct(r['accuracy'])} ({ci_range(r['accuracy_ci95'])}) | "
            f"{diff} | {r['macro_f1']:.3f} | [{r['report']}]({r['report']}) |"
        )
    lines += [
        "",
        "A negative difference is how much the random image-level split (a) overstates the "
        "accuracy measured when copies cannot be on both sides.",
        "",
        f"Intervals: {b['method']}, {b['resamples']} resamples (seed {b['seed']}) over "
        f"{b['groups']} groups ({b['unit']}; the coarsest grouping, which contains every "
        "duplicate group). Each resample draws whole groups with replacement and scores every "
        "protocol on the same draw, so the difference's interval is paired. It covers which "
        "images were tested, not the training's randomness: more --seeds show that.",
        "",
        f"![protocols]({PROTOCOLS_PNG})",
        "",
    ]
    path = out / REPORT_MD
    path.write_text("\n".join(lines))


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
