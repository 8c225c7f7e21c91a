"""Pictures and a readable `report.md` for an evaluation, so a reader can tell how good the model
is and how sure to be of it: headline accuracy with its interval, per-class table, the clinical
sensitivity/specificity, calibration, data provenance and the training settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bloodcell.labels import DISPLAY_NAMES
from bloodcell.records import ModelConfig, SplitMetrics
from bloodcell.reporting.markdown import ci_range, fmt, pct
from bloodcell.reporting.plots import plot_confusion, plot_reliability, plot_roc
from bloodcell.run_dir import EVAL_DIR, REPORT_MD

CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"


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
        f"| ROC-AUC (macro, one-vs-rest) | {fmt(m['roc_auc']['macro'])} |",
        f"| expected calibration error | {m['ece']:.3f} |",
    ]


def _per_class(m: SplitMetrics) -> list[str]:
    lines = ["| class | precision | recall | F1 | ROC-AUC | support |", "|---|---|---|---|---|---|"]
    for lab, r in m["per_class"].items():
        auc = m["roc_auc"]["per_class"].get(lab)
        lines.append(
            f"| {DISPLAY_NAMES.get(lab, lab)} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {fmt(auc)} | {r['support']} |"
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
