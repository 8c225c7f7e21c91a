"""Robustness scores: the worst middle-severity case, and the quick score agreeing with
`compute_metrics` (the whole evaluation end to end: tests/workflows/test_evaluate_job.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.evaluation.metrics import compute_metrics
from bloodcell.evaluation.robustness import score, worst_middle
from bloodcell.labels import LABELS


def test_worst_middle_picks_the_lowest_middle_accuracy() -> None:
    rows = [
        {"corruption": "a", "severity": 3, "accuracy": 0.1, "macro_f1": 0.1},
        {"corruption": "b", "severity": 2, "accuracy": 0.8, "macro_f1": 0.8},
        {"corruption": "c", "severity": 2, "accuracy": 0.7, "macro_f1": 0.7},
    ]
    assert worst_middle(rows)["corruption"] == "c"
    assert worst_middle(rows[:1]) is None


def test_score_agrees_with_compute_metrics() -> None:
    rng = np.random.default_rng(4)
    for n in (30, 200):
        y = rng.integers(0, 4, n)
        probs = rng.dirichlet(np.ones(4), n) + 0.5 * np.eye(4)[y]
        full, quick = compute_metrics(y, probs, LABELS, n_boot=10), score(y, probs, LABELS)
        for key in ("accuracy", "macro_f1", "balanced_accuracy"):
            assert quick[key] == pytest.approx(full[key]), key
        assert quick["accuracy_ci95"] == pytest.approx(full["ci95"]["accuracy_wilson"])
        assert quick["sensitivity"] == pytest.approx(full["clinical"]["sensitivity"])
