"""Metrics against scikit-learn and hand-computed values; a run's evaluation end to end."""

from __future__ import annotations

import json
from pathlib import Path

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
from tests.train import tiny_run

from bloodcell.evaluate import (
    _group_weights,
    _macro_f1_from_confusions,
    bootstrap_ci,
    calibration_bins,
    compute_metrics,
    evaluate_run,
    group_bootstrap_ci,
    group_bootstrap_mean,
    wilson_ci,
)
from bloodcell.labels import LABELS, MALIGNANT


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
        assert _macro_f1_from_confusions(cm)[0] == pytest.approx(f1_score(y, p, average="macro"))


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
    from torchmetrics.functional.classification import multiclass_calibration_error

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


def test_evaluate_run_writes_metrics_pictures_and_report(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, epochs=2)
    m = evaluate_run(run, "test", progress=False)
    out = run / "eval" / "test"
    for name in (
        "metrics.json",
        "report.md",
        "predictions.csv",
        "confusion_matrix.png",
        "roc.png",
        "reliability.png",
    ):
        assert (out / name).is_file(), name
    assert m["n"] == 8 and m["data"]["matches_training_manifest"]
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    evaluate_run(run / "model", "val", progress=False)
    recorded = json.loads((run / "model" / "metrics.json").read_text())
    assert set(recorded) == {"test", "val"}
    assert recorded["test"]["accuracy"] == m["accuracy"]
