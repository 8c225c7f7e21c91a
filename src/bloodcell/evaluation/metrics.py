"""Every figure bloodcell reports about a set of predictions, defined once.

Accuracy, balanced accuracy, macro-F1, Cohen's kappa, the confusion matrix, precision, recall
and F1 per class and ROC-AUC come from scikit-learn. The malignant-vs-benign sensitivity and
specificity carry Wilson intervals; accuracy and macro-F1 carry percentile-bootstrap intervals
over images (`bootstrap_ci`) or over groups of copies (`group_bootstrap_ci`, used by
cross-validation, where copies of one image are not independent evidence). The out-of-scope
score's AUROC and FPR at 95% TPR come from pytorch-ood (`scope_separation`).

Calibration has one definition, used by calibrate, evaluate, cross-validation and the group
bootstrap alike (`calibration_bins`): the top-class probability is cut into equal-width bins,
right-closed (lo, hi] with 0 in the first, and ECE = sum over bins of (share of images) *
|accuracy - mean confidence|. That is torchmetrics' `multiclass_calibration_error(norm="l1")`
for every confidence but one lying exactly on an inner bin edge, or exactly 1.0 beside lower
ones in the top bin: torchmetrics closes its bins on the left and gives 1.0 a bin of its own.
(A float32 softmax never lands on an inner edge of the 15 bins used everywhere.)

Two things are computed here by hand because no library does them at the needed scale: the
binning (vectorised, so the group bootstrap can weight it), and the macro-F1 of a thousand
resampled confusion matrices at once (`macro_f1_of_confusions`; tested against scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bloodcell.labels import LABELS, MALIGNANT
from bloodcell.records import (
    CalibrationBin,
    ClassMetrics,
    ClinicalMetrics,
    GroupBootstrapRecord,
    GroupIntervals,
    GroupMean,
    ImageIntervals,
    Interval,
    Metrics,
    RocAuc,
    ScopeSeparation,
)

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
ECE_BINS = 15
LEVEL = 0.95


# --- point figures ------------------------------------------------------------------------------


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y_true`."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in the truth or the predictions."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(k)))


def per_class_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> dict[str, ClassMetrics]:
    """Precision, recall (sensitivity for that class), F1 and support of every class."""
    from sklearn.metrics import precision_recall_fscore_support

    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), zero_division=0
    )
    return {
        lab: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }


def wilson_ci(successes: int, n: int, level: float = 0.95) -> Interval | None:
    """Wilson score interval for a proportion (sensitivity, specificity, coverage), from
    SciPy; None when n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return [float(ci.low), float(ci.high)]


def clinical_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> ClinicalMetrics:
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


def roc_auc(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> RocAuc:
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


def scope_separation(in_scope: np.ndarray, other: np.ndarray) -> ScopeSeparation:
    """AUROC and FPR at 95% TPR of an out-of-scope score (pytorch-ood's metrics), with the
    images of `other` as the positive (out-of-scope) class against the in-scope ones."""
    import torch
    from pytorch_ood.metrics import AUROC, FPRAtTPR

    if len(in_scope) == 0 or len(other) == 0:
        return {"auroc": None, "fpr_at_95_tpr": None}
    scores = torch.as_tensor(np.concatenate([in_scope, other]), dtype=torch.float64)
    labels = torch.cat([torch.zeros(len(in_scope)), -torch.ones(len(other))]).long()
    auroc = AUROC().update(scores, labels).compute()["AUROC"]
    fpr = FPRAtTPR(tpr=0.95).update(scores, labels).compute()["FPR95TPR"]
    return {"auroc": float(auroc), "fpr_at_95_tpr": float(fpr)}


# --- calibration --------------------------------------------------------------------------------


def ece_bin(conf: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """The bin of each confidence: equal-width, right-closed (lo, hi], 0 in the first bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def calibration_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[float, list[CalibrationBin]]:
    """Expected calibration error of the top-class confidence, and its reliability bins.

    ECE = sum over bins of (share of images in the bin) * |bin accuracy - bin mean confidence|
    (`ece_bin` says which bin); NaN without images.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = ece_bin(conf, n_bins)
    ece, bins = 0.0, []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        row: CalibrationBin = {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": count,
        }
        if count:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += count / len(conf) * abs(acc - mean_conf)
            row |= {"accuracy": acc, "confidence": mean_conf}
        bins.append(row)
    return (float(ece) if len(conf) else float("nan")), bins


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """The ECE of `calibration_bins`, without the bins."""
    return calibration_bins(y_true, probs, n_bins)[0]


# --- intervals ----------------------------------------------------------------------------------


def macro_f1_of_confusions(cms: np.ndarray) -> np.ndarray:
    """Macro-F1 of a stack of confusion matrices (B, K, K), rows = truth.

    `macro_f1` for a thousand bootstrap resamples at once: averages over the classes that occur
    in the truth or the predictions, as scikit-learn's `f1_score(average="macro")` does.
    """
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    denom = cms.sum(axis=2) + cms.sum(axis=1)  # support + predicted = 2tp + fp + fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _interval(values: np.ndarray, level: float) -> Interval:
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    k: int,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals for accuracy and macro-F1, resampling images with
    replacement (vectorised: one confusion matrix per resample)."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    codes = (y_true * k + y_pred)[idx] + (np.arange(n_boot) * k * k)[:, None]
    cms = np.bincount(codes.ravel(), minlength=n_boot * k * k).reshape(n_boot, k, k)
    acc = np.trace(cms, axis1=1, axis2=2) / n
    return {
        "accuracy": _interval(acc, level),
        "macro_f1": _interval(macro_f1_of_confusions(cms), level),
    }


def _group_weights(groups: Sequence[Any], n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Group index of every item, and (n_boot, n_groups) counts of how often each group is
    drawn when all groups are drawn with replacement once per resample."""
    _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(gid.max()) + 1
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)
    return gid, weights.astype(float)


def _percentiles(values: np.ndarray, level: float) -> Interval | None:
    """Percentile interval of the finite values (None when a resample never defines it)."""
    values = values[np.isfinite(values)]
    return _interval(values, level) if len(values) else None


def _group_bootstrap_record(
    n_groups: int, n_boot: int, seed: int, level: float
) -> GroupBootstrapRecord:
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
    level: float = LEVEL,
) -> GroupIntervals:
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
    # The ECE of `calibration_bins` per resample: per bin, |sum of (correct - confidence)| / n
    conf = probs.max(axis=1)
    gaps = np.zeros((w.shape[1], ECE_BINS))
    np.add.at(gaps, (gid, ece_bin(conf)), (y_pred == y_true) - conf)
    ece = np.abs(w @ gaps).sum(axis=1) / n
    return {
        "accuracy": _percentiles(np.trace(cms, axis1=1, axis2=2) / n, level),
        "macro_f1": _percentiles(macro_f1_of_confusions(cms), level),
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
    level: float = LEVEL,
) -> GroupMean:
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


# --- everything at once -------------------------------------------------------------------------


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str] = LABELS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> Metrics:
    """Every reported metric for true class indices `y_true` and class probabilities `probs`."""
    from sklearn.metrics import cohen_kappa_score

    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")
    k = len(labels)
    y_pred = probs.argmax(axis=1)
    ece, bins = calibration_bins(y_true, probs)
    ci = bootstrap_ci(y_true, y_pred, k, n_boot, seed)
    intervals: ImageIntervals = {
        "accuracy": ci["accuracy"],
        "macro_f1": ci["macro_f1"],
        # The bootstrap collapses to a point at 100% (or 0%); Wilson's interval does not.
        "accuracy_wilson": wilson_ci(int((y_pred == y_true).sum()), len(y_true)),
    }
    return {
        "n": int(len(y_true)),
        "labels": list(labels),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "cohen_kappa": float(cohen_kappa_score(y_true, y_pred, labels=list(range(k)))),
        "per_class": per_class_metrics(y_true, y_pred, labels),
        "roc_auc": roc_auc(y_true, probs, labels),
        "clinical": clinical_metrics(y_true, y_pred, labels),
        "ci95": intervals,
        "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile"},
        "ece": ece,
        "calibration_bins": bins,
        "confusion_matrix": confusion(y_true, y_pred, k).tolist(),
    }
