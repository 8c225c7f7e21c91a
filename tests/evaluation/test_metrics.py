"""The metrics module: every figure against scikit-learn, torchmetrics or a hand computation,
the one ECE (its tie case included) shared by every caller, and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

from bloodcell.evaluation.metrics import (
    ECE_BINS,
    _group_weights,
    bootstrap_ci,
    calibration_bins,
    compute_metrics,
    expected_calibration_error,
    group_bootstrap_ci,
    group_bootstrap_mean,
    macro_f1_of_confusions,
    scope_separation,
    wilson_ci,
)
from bloodcell.labels import LABELS, MALIGNANT
from bloodcell.models.backends import softmax


def _random_case(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 2.0 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_metrics_match_scikit_learn() -> None:
    y, probs = _random_case()
    pred = probs.argmax(1)
    m = compute_metrics(y, probs, LABELS)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["cohen_kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=[0, 1, 2, 3])
    for i, lab in enumerate(LABELS):
        assert m["per_class"][lab]["precision"] == pytest.approx(p[i])
        assert m["per_class"][lab]["recall"] == pytest.approx(r[i])
        assert m["per_class"][lab]["f1"] == pytest.approx(f[i])
        assert m["per_class"][lab]["support"] == s[i]
        assert m["roc_auc"]["per_class"][lab] == pytest.approx(roc_auc_score(y == i, probs[:, i]))
    lo, hi = m["ci95"]["accuracy"]
    assert lo < m["accuracy"] < hi and hi - lo < 0.2
    flo, fhi = m["ci95"]["macro_f1"]
    assert flo < m["macro_f1"] < fhi
    assert compute_metrics(y, probs, LABELS)["ci95"] == m["ci95"]  # seeded


def test_vectorised_bootstrap_macro_f1_equals_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y, p = rng.integers(0, 4, 30), rng.integers(0, 3, 30)  # class 3 never predicted
        cm = np.zeros((1, 4, 4), dtype=int)
        np.add.at(cm[0], (y, p), 1)
        assert macro_f1_of_confusions(cm)[0] == pytest.approx(f1_score(y, p, average="macro"))


def test_clinical_sensitivity_and_specificity_by_hand() -> None:
    # benign=0 is negative; classes 1-3 are malignant.
    y = np.array([0, 0, 0, 0, 1, 2, 3, 3, 1, 2])
    pred = np.array([0, 0, 0, 2, 1, 3, 3, 0, 1, 1])  # one FP (benign->2), one FN (3->benign)
    m = compute_metrics(y, np.eye(4)[pred], LABELS)
    c = m["clinical"]
    assert (c["tp"], c["fn"], c["tn"], c["fp"]) == (5, 1, 3, 1)
    assert c["sensitivity"] == pytest.approx(5 / 6)
    assert c["specificity"] == pytest.approx(3 / 4)


def test_ece_hand_computed_and_against_torchmetrics() -> None:
    # Two images at confidence 0.9 (one right), two at 0.6 (both right):
    # ECE = 0.5*|0.5-0.9| + 0.5*|1.0-0.6| = 0.4
    probs = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0.4, 0.6, 0, 0]])
    y = np.array([0, 1, 0, 1])
    ece, bins = calibration_bins(y, probs)
    assert ece == pytest.approx(0.4)
    assert sum(b["count"] for b in bins) == 4
    y2, p2 = _random_case(300, seed=5)
    tm = multiclass_calibration_error(torch.tensor(p2), torch.tensor(y2), 4, n_bins=15)
    assert calibration_bins(y2, p2)[0] == pytest.approx(float(tm), abs=1e-5)


def test_group_bootstrap_equals_metrics_of_each_resampled_set() -> None:
    """Every resample is the images of the drawn groups (with repeats): its metrics, computed
    by scikit-learn and `calibration_bins` on that set, give the same percentiles."""
    y, probs = _random_case(120, seed=4)
    groups = [f"g{i // 3}" for i in range(len(y))]  # 40 groups of 3 images
    n_boot = 60
    got = group_bootstrap_ci(y, probs, groups, n_boot=n_boot, seed=2)
    gid, w = _group_weights(groups, n_boot, 2)
    members = [np.flatnonzero(gid == g) for g in range(w.shape[1])]
    stats = {k: [] for k in ("accuracy", "macro_f1", "ece", "sensitivity", "recall_pre_b")}
    mal = np.array([lab in MALIGNANT for lab in LABELS])
    for counts in w.astype(int):
        idx = np.concatenate([np.repeat(members[g], c) for g, c in enumerate(counts)])
        yt, yp = y[idx], probs[idx].argmax(1)
        stats["accuracy"].append(accuracy_score(yt, yp))
        stats["macro_f1"].append(f1_score(yt, yp, average="macro"))
        stats["ece"].append(calibration_bins(yt, probs[idx])[0])
        stats["sensitivity"].append((mal[yt] & mal[yp]).sum() / mal[yt].sum())
        stats["recall_pre_b"].append((yp[yt == 2] == 2).mean())
    for key, vals in stats.items():
        want = np.percentile(vals, [2.5, 97.5])
        ci = got["recall"]["pre_b"] if key == "recall_pre_b" else got[key]
        assert ci == pytest.approx(want, abs=1e-9), key
    assert got["groups"] == 40 and got["unit"] == "group"


def test_group_bootstrap_is_wider_than_counting_copies_as_images() -> None:
    """Five copies of each of 40 images: resampling images treats them as 200 independent
    results and narrows the interval; resampling groups gives that of the 40 images."""
    y, probs = _random_case(40, seed=5)
    y5, probs5 = np.repeat(y, 5), np.repeat(probs, 5, axis=0)
    groups = np.repeat(np.arange(40), 5)
    by_group = group_bootstrap_ci(y5, probs5, groups)["accuracy"]
    by_image = bootstrap_ci(y5, probs5.argmax(1), 4)["accuracy"]
    originals = bootstrap_ci(y, probs.argmax(1), 4)["accuracy"]
    assert by_group[1] - by_group[0] > 1.8 * (by_image[1] - by_image[0])
    assert by_group[1] - by_group[0] == pytest.approx(originals[1] - originals[0], abs=0.06)


def test_group_bootstrap_mean_and_paired_difference() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 4)
    a = (rng.random(200) < 0.9).astype(float)
    same = group_bootstrap_mean(a - a, groups)
    assert same["mean"] == 0 and same["ci95"] == [0.0, 0.0]
    b = a.copy()
    b[:20] = 0  # b is wrong on the first 5 groups' images
    diff = group_bootstrap_mean(b - a, groups)
    assert diff["mean"] == pytest.approx(b.mean() - a.mean())
    assert diff["ci95"][0] < diff["mean"] < diff["ci95"][1] <= 0
    acc = group_bootstrap_mean(a, groups)
    assert acc["mean"] == pytest.approx(a.mean()) and acc["ci95"][0] < a.mean() < acc["ci95"][1]


def test_wilson_interval_known_value() -> None:
    lo, hi = wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_ci(0, 0) is None
    assert wilson_ci(10, 10)[1] == pytest.approx(1.0) and wilson_ci(10, 10)[0] < 0.8


def test_ece_matches_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    logits = rng.normal(size=(2000, 4))
    logits[np.arange(2000), y] += 1.5
    probs = softmax((logits * 4.0).astype(np.float32))  # a ~70%-accurate, over-confident model
    ours = expected_calibration_error(y, probs, n_bins=15)
    ref = multiclass_calibration_error(
        torch.tensor(probs), torch.tensor(y), num_classes=4, n_bins=15, norm="l1"
    )
    assert ours == pytest.approx(float(ref), abs=1e-4)


def _tied() -> tuple[np.ndarray, np.ndarray]:
    """Two images on the 0.5 edge of 10 bins, wrong (the first of two tied classes is the
    answer); two just above it, right."""
    probs = np.array(
        [[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0.55, 0.45, 0, 0], [0.3, 0.7, 0, 0]], dtype=float
    )
    return np.array([1, 1, 0, 1]), probs


def test_ece_on_confidences_tied_at_a_bin_edge() -> None:
    """A confidence on an edge belongs to the bin below it, (0.4, 0.5]: by hand,
    ECE = 0.5*|0 - 0.5| + 0.25*|1 - 0.55| + 0.25*|1 - 0.7| = 0.4375. Every figure that reports
    an ECE uses this one function; torchmetrics closes its bins on the left and puts 0.5 with
    0.55, so it differs here (and only on such ties)."""
    y, probs = _tied()
    ece, bins = calibration_bins(y, probs, n_bins=10)
    assert ece == pytest.approx(0.4375)
    assert expected_calibration_error(y, probs, n_bins=10) == ece
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 2, 1, 1, 0, 0, 0]
    assert bins[4]["upper"] == 0.5 and bins[4]["confidence"] == 0.5
    tm = multiclass_calibration_error(torch.tensor(probs), torch.tensor(y), 4, n_bins=10)
    assert float(tm) == pytest.approx(0.75 * abs(1 / 3 - 1.55 / 3) + 0.25 * abs(1 - 0.7))


def test_group_bootstrap_ece_bins_ties_like_calibration_bins() -> None:
    """Confidences exactly on edges of the 15 bins: the group bootstrap's ECE of every
    resample is `calibration_bins` of that resample, so they fall in the same bins."""
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    rng = np.random.default_rng(7)
    conf = edges[rng.integers(5, ECE_BINS + 1, 90)]  # 1/3 ... 1, all on edges
    probs = np.zeros((90, 4))
    probs[:, 0] = conf
    probs[:, 1] = 1 - conf
    y = rng.integers(0, 2, 90)
    groups = [f"g{i // 3}" for i in range(90)]
    got = group_bootstrap_ci(y, probs, groups, n_boot=40, seed=1)
    gid, w = _group_weights(groups, 40, 1)
    members = [np.flatnonzero(gid == g) for g in range(w.shape[1])]
    eces = []
    for counts in w.astype(int):
        idx = np.concatenate([np.repeat(members[g], c) for g, c in enumerate(counts)])
        eces.append(calibration_bins(y[idx], probs[idx])[0])
    assert got["ece"] == pytest.approx(np.percentile(eces, [2.5, 97.5]), abs=1e-9)
    assert compute_metrics(y, probs, LABELS, n_boot=10)["ece"] == calibration_bins(y, probs)[0]


def test_scope_separation_measures() -> None:
    inside, outside = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 2.0, 3.0])
    assert scope_separation(inside, outside) == {"auroc": 1.0, "fpr_at_95_tpr": 0.0}
    mixed = scope_separation(np.array([0.1, 0.5, 2.5]), np.array([1.0, 2.0, 3.0]))
    assert 0.5 < mixed["auroc"] < 1.0 and mixed["fpr_at_95_tpr"] > 0
    assert scope_separation(inside, np.array([]))["auroc"] is None
