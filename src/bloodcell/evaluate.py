"""Evaluation the way a careful reviewer reads it: not one accuracy figure, but per-class
metrics, the clinical malignant-vs-benign trade-off, calibration, and how sure we can be
(95% bootstrap confidence intervals over the evaluated images).

`compute_metrics` is pure (arrays in, dict out). `evaluate_run` loads a saved model, predicts
one split of the manifest through `models.backends.dataset_outputs` (the loop calibration and
export use too), and writes metrics, pictures and a report. Beside the classifier's figures it
reports the out-of-scope detector's refusals (`scope_metrics`) and the conformal prediction
sets' coverage and size (`conformal_metrics`).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS, MALIGNANT

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
ECE_BINS = 15
EVAL_DIR = "eval"


# --- metrics ------------------------------------------------------------------------------------


def _macro_f1_from_confusions(cms: np.ndarray) -> np.ndarray:
    """Macro-F1 of a stack of confusion matrices (B, K, K), rows = truth.

    Averages over classes that occur in the truth or the predictions, as scikit-learn's
    `f1_score(average="macro")` does without `labels`.
    """
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    denom = cms.sum(axis=2) + cms.sum(axis=1)  # support + predicted = 2tp + fp + fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    k: int,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for accuracy and macro-F1, resampling images with
    replacement (vectorised: one confusion matrix per resample)."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    codes = (y_true * k + y_pred)[idx] + (np.arange(n_boot) * k * k)[:, None]
    cms = np.bincount(codes.ravel(), minlength=n_boot * k * k).reshape(n_boot, k, k)
    acc = np.trace(cms, axis1=1, axis2=2) / n
    f1 = _macro_f1_from_confusions(cms)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {
        "accuracy": [float(np.percentile(acc, lo)), float(np.percentile(acc, hi))],
        "macro_f1": [float(np.percentile(f1, lo)), float(np.percentile(f1, hi))],
    }


def _group_weights(groups: Sequence[Any], n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Group index of every item, and (n_boot, n_groups) counts of how often each group is
    drawn when all groups are drawn with replacement once per resample."""
    _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(gid.max()) + 1
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)
    return gid, weights.astype(float)


def _percentiles(values: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval of the finite values (None when a resample never defines it)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]


def _group_bootstrap_record(n_groups: int, n_boot: int, seed: int, level: float) -> dict:
    """How a group-bootstrap interval was made, recorded beside it."""
    return {
        "unit": "group",
        "groups": int(n_groups),
        "resamples": n_boot,
        "seed": seed,
        "level": level,
        "method": "percentile",
    }


def group_bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[Any],
    labels: Sequence[str] = LABELS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap intervals that resample whole groups, not images.

    Copies of one image (or one slide's neighbouring images) are not independent: resampling
    images treats them as separate evidence and makes intervals too narrow. Here every
    resample draws the groups with replacement and takes all images of each drawn group.
    Covers accuracy, macro-F1, recall per class, malignant-vs-benign sensitivity and
    specificity, and ECE (vectorised: one weighted confusion matrix per resample).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    k = len(labels)
    y_pred = probs.argmax(axis=1)
    gid, w = _group_weights(groups, n_boot, seed)
    per_group = np.zeros((w.shape[1], k * k))
    np.add.at(per_group, (gid, y_true * k + y_pred), 1)
    cms = (w @ per_group).reshape(n_boot, k, k)
    n = cms.sum(axis=(1, 2))
    rows = cms.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diagonal(cms, axis1=1, axis2=2) / rows
        mal = np.array([lab in MALIGNANT for lab in labels])
        tp, fn = cms[:, mal][:, :, mal].sum(axis=(1, 2)), cms[:, mal][:, :, ~mal].sum(axis=(1, 2))
        tn, fp = cms[:, ~mal][:, :, ~mal].sum(axis=(1, 2)), cms[:, ~mal][:, :, mal].sum(axis=(1, 2))
        sens, spec = tp / (tp + fn), tn / (tn + fp)
    # ECE = sum over bins of |sum of (correct - confidence) in the bin| / n
    conf = probs.max(axis=1)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, ECE_BINS - 1)
    gaps = np.zeros((w.shape[1], ECE_BINS))
    np.add.at(gaps, (gid, which), (y_pred == y_true) - conf)
    ece = np.abs(w @ gaps).sum(axis=1) / n
    return {
        "accuracy": _percentiles(np.trace(cms, axis1=1, axis2=2) / n, level),
        "macro_f1": _percentiles(_macro_f1_from_confusions(cms), level),
        "recall": {lab: _percentiles(recall[:, i], level) for i, lab in enumerate(labels)},
        "sensitivity": _percentiles(sens, level),
        "specificity": _percentiles(spec, level),
        "ece": _percentiles(ece, level),
        **_group_bootstrap_record(w.shape[1], n_boot, seed, level),
    }


def group_bootstrap_mean(
    values: np.ndarray,
    groups: Sequence[Any],
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict[str, Any]:
    """The mean of per-image `values` with a percentile interval from resampling whole groups.

    With values 1/0 (right/wrong, or the share of seeds right) it is an accuracy. With the
    per-image difference of two protocols' correctness it is a paired bootstrap of the
    accuracy difference: both are scored on the same draw of groups in every resample.
    """
    values = np.asarray(values, dtype=float)
    gid, w = _group_weights(groups, n_boot, seed)
    sum_g = np.bincount(gid, weights=values, minlength=w.shape[1])
    size_g = np.bincount(gid, minlength=w.shape[1]).astype(float)
    return {
        "mean": float(values.mean()),
        "ci95": _percentiles((w @ sum_g) / (w @ size_g), level),
        **_group_bootstrap_record(w.shape[1], n_boot, seed, level),
    }


def calibration_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of the top-class confidence, with its bins.

    Confidence in [0, 1] is cut into `n_bins` equal-width bins (right-closed, as torchmetrics);
    ECE = sum over bins of (bin share of images) * |bin accuracy - bin mean confidence|.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        row = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count}
        if count:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += count / len(conf) * abs(acc - mean_conf)
            row |= {"accuracy": acc, "confidence": mean_conf}
        bins.append(row)
    return float(ece), bins


def wilson_ci(successes: int, n: int, z: float = 1.959964) -> list[float] | None:
    """Wilson score interval for a proportion (sensitivity, specificity); None when n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def clinical_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Malignant (any malignant class) vs benign: sensitivity and specificity of the predicted
    class, with Wilson 95% intervals. Malignant is the positive class."""
    malignant = np.array([lab in MALIGNANT for lab in labels])
    truth, pred = malignant[y_true], malignant[y_pred]
    tp, fn = int((truth & pred).sum()), int((truth & ~pred).sum())
    tn, fp = int((~truth & ~pred).sum()), int((~truth & pred).sum())
    return {
        "positive": "malignant",
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "sensitivity_ci": wilson_ci(tp, tp + fn),
        "specificity_ci": wilson_ci(tn, tn + fp),
    }


def roc_auc(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict:
    """One-vs-rest ROC-AUC per class (None for a class absent or alone) and their macro mean."""
    from sklearn.metrics import roc_auc_score

    per: dict[str, float | None] = {}
    for i, lab in enumerate(labels):
        positive = y_true == i
        per[lab] = (
            float(roc_auc_score(positive, probs[:, i]))
            if 0 < positive.sum() < len(y_true)
            else None
        )
    known = [v for v in per.values() if v is not None]
    return {"per_class": per, "macro": float(np.mean(known)) if known else None}


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str] = LABELS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Every reported metric for true class indices `y_true` and class probabilities `probs`."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")
    k = len(labels)
    y_pred = probs.argmax(axis=1)
    ids = list(range(k))
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    per_class = {
        lab: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }
    ece, bins = calibration_bins(y_true, probs)
    ci = bootstrap_ci(y_true, y_pred, k, n_boot, seed)
    # The bootstrap collapses to a point at 100% (or 0%); Wilson's interval does not.
    ci["accuracy_wilson"] = wilson_ci(int((y_pred == y_true).sum()), len(y_true))
    return {
        "n": int(len(y_true)),
        "labels": list(labels),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "cohen_kappa": float(cohen_kappa_score(y_true, y_pred, labels=ids)),
        "per_class": per_class,
        "roc_auc": roc_auc(y_true, probs, labels),
        "clinical": clinical_metrics(y_true, y_pred, labels),
        "ci95": ci,
        "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile"},
        "ece": ece,
        "calibration_bins": bins,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


# --- out of scope and prediction sets ------------------------------------------------------------

#: Coverages the report shows prediction sets at, whatever the model's own default.
REPORT_COVERAGES = (0.90, 0.95, 0.99)


def conformal_metrics(
    conformal: Any, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> dict[str, Any] | None:
    """Empirical coverage (Wilson 95% CI), mean set size and share of sets with more than one
    class, at each of `REPORT_COVERAGES` and the model's own; None without conformal sets."""
    from bloodcell.models.conformal import set_labels

    if conformal is None or len(y_true) == 0:
        return None
    y_true = np.asarray(y_true, dtype=int)
    rows = {}
    for coverage in sorted({*REPORT_COVERAGES, conformal.coverage}):
        member = conformal.sets(probs, coverage)
        covered = int(member[np.arange(len(y_true)), y_true].sum())
        sizes = member.sum(axis=1)
        pairs: dict[str, int] = {}
        for names in set_labels(member[sizes > 1], labels):
            key = " | ".join(names)
            pairs[key] = pairs.get(key, 0) + 1
        rows[f"{coverage:.2f}"] = {
            "coverage_target": coverage,
            "coverage": covered / len(y_true),
            "coverage_ci95": wilson_ci(covered, len(y_true)),
            "mean_set_size": float(sizes.mean()),
            "multi_class_share": float((sizes > 1).mean()),
            "multi_class_sets": pairs,
        }
    return {"default_coverage": conformal.coverage, "n": int(len(y_true)), "levels": rows}


def scope_metrics(
    scores: np.ndarray | None, detector: dict[str, Any] | None, paths: Sequence[str]
) -> dict[str, Any] | None:
    """How many in-scope images the detector (its config: threshold, acceptance) refused, and
    which; None without a detector."""
    if scores is None or detector is None:
        return None
    flagged = np.asarray(scores) > detector["threshold"]
    n = len(flagged)
    return {
        "threshold": float(detector["threshold"]),
        "acceptance": float(detector["acceptance"]),
        "n": n,
        "flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()) if n else 0.0,
        "flagged_ci95": wilson_ci(int(flagged.sum()), n),
        "flagged_paths": [p for p, f in zip(paths, flagged, strict=True) if f],
        "score_quantiles": {q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.9", "0.99")}
        if n
        else {},
    }


# --- a run's evaluation ---------------------------------------------------------------------------


def run_dir_of(model_dir: Path) -> Path:
    """The run directory holding a model (`RUN/model` -> RUN), or the model dir itself."""
    return model_dir.parent if model_dir.name == "model" else model_dir


def open_run_model(model: str | Path) -> tuple[Any, dict[str, Any], Path]:
    """(backend, the saved model's config, run dir) for a run/model dir or an `.onnx` file.

    An `.onnx` file lacks the training record; the config beside it (an export inside a model
    directory) supplies the data folder and manifest when there is one.
    """
    from bloodcell.models.backends import TorchBackend, open_backend

    backend = open_backend(model)
    if isinstance(backend, TorchBackend):
        return backend, backend.loaded.config, run_dir_of(backend.path)
    beside = backend.path.parent / "config.json"
    config = json.loads(beside.read_text()) if beside.is_file() else {}
    return backend, config, run_dir_of(backend.path.parent)


def resolve_data(
    config: dict, run_dir: Path, data_root: str | Path | None, manifest: str | Path | None
) -> tuple[Path, Path]:
    """The data root and manifest of a run: given ones first, then those recorded in training."""
    recorded = config.get("data", {})
    if manifest is None:
        candidates = [recorded.get("manifest"), run_dir / "manifest.csv"]
        manifest = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
        if manifest is None:
            raise DatasetError(
                f"{run_dir}: the training manifest is gone ({recorded.get('manifest')}); "
                "pass --manifest FILE"
            )
    data_root = data_root or recorded.get("data_root")
    if not data_root:
        raise DatasetError(f"{run_dir}: no data folder recorded; pass --data DIR")
    return Path(data_root).expanduser(), Path(manifest)


def evaluate_run(
    run_or_model_dir: str | Path,
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a saved model on one manifest split; write RUN/eval/<split>/ and return metrics.

    Data root and manifest default to those the model recorded at training time. The model
    answers with its calibration temperature, out-of-scope detector and prediction sets.
    """
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.data.manifest import file_sha256, read_manifest, select
    from bloodcell.data.split import split_counts
    from bloodcell.models.backends import TorchBackend, dataset_outputs, softmax
    from bloodcell.models.saved import METRICS_FILE, load_model, write_json
    from bloodcell.report import write_eval_report

    loaded = load_model(run_or_model_dir)
    backend = TorchBackend(loaded)
    run_dir = run_dir_of(loaded.path)
    data_root, manifest = resolve_data(loaded.config, run_dir, data_root, manifest)
    all_rows = read_manifest(manifest)
    rows = select(all_rows, split)
    if not rows:
        raise DatasetError(f"{manifest}: no {split} rows to evaluate")
    t0 = time.perf_counter()
    dataset = ManifestDataset(rows, data_root, backend.preprocess.transform())
    outputs, y_true = dataset_outputs(
        backend, dataset, batch_size, progress=f"predict {split}" if progress else None
    )
    probs = softmax(outputs.logits, backend.temperature).astype(float)
    seconds = time.perf_counter() - t0
    metrics = compute_metrics(y_true, probs, loaded.labels)
    paths = [r.path for r in rows]
    metrics["out_of_scope"] = scope_metrics(outputs.ood_score, backend.ood_info, paths)
    metrics["prediction_sets"] = conformal_metrics(backend.conformal, y_true, probs, backend.labels)
    sha = file_sha256(manifest)
    metrics |= {
        "split": split,
        "model_dir": str(loaded.path),
        "architecture": loaded.architecture,
        "temperature": loaded.temperature,
        "data": {
            "manifest": str(manifest.resolve()),
            "manifest_sha256": sha,
            "matches_training_manifest": sha
            == loaded.config.get("data", {}).get("manifest_sha256"),
            "data_root": str(data_root),
            "counts": split_counts(all_rows),
        },
        "predict_seconds": round(seconds, 2),
        "images_per_second": round(len(rows) / seconds, 1) if seconds else None,
    }
    out = Path(out_dir) if out_dir else run_dir / EVAL_DIR / split
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    _write_predictions(out / "predictions.csv", rows, probs, outputs.ood_score, loaded.labels)
    write_eval_report(metrics, y_true, probs, out, loaded.config)
    _record_in_model(loaded.path / METRICS_FILE, split, metrics)
    return metrics


def _write_predictions(
    path: Path,
    rows: Sequence[Any],
    probs: np.ndarray,
    ood_scores: np.ndarray | None,
    labels: Sequence[str],
) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "label", "predicted", "ood_score", *[f"p_{lab}" for lab in labels]])
        for i, (row, p) in enumerate(zip(rows, probs, strict=True)):
            score = "" if ood_scores is None else f"{ood_scores[i]:.6f}"
            w.writerow(
                [row.path, row.label, labels[int(p.argmax())], score, *[f"{v:.6f}" for v in p]]
            )


def _record_in_model(path: Path, split: str, metrics: dict[str, Any]) -> None:
    """Keep the model's own metrics.json up to date, keyed by split (large tables left out)."""
    existing = json.loads(path.read_text()) if path.is_file() else {}
    skip = {"calibration_bins", "confusion_matrix"}
    existing[split] = {k: v for k, v in metrics.items() if k not in skip}
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def summary_line(metrics: dict[str, Any]) -> str:
    """'test: accuracy 97.5% (95% CI 95.6-98.8%), macro-F1 0.974 (0.953-0.988), n=281'."""
    lo, hi = metrics["ci95"]["accuracy"]
    flo, fhi = metrics["ci95"]["macro_f1"]
    return (
        f"{metrics.get('split', '?')}: accuracy {metrics['accuracy']:.1%} "
        f"(95% CI {lo:.1%}-{hi:.1%}), macro-F1 {metrics['macro_f1']:.3f} "
        f"({flo:.3f}-{fhi:.3f}), n={metrics['n']}"
    )
