"""The cell-type gate: the top probability of the logits, a threshold that keeps the asked
share of validation images, and its record."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.models.cell_gate import CellGate, fit_gate, top_probability


def test_top_probability_is_the_largest_softmax_share() -> None:
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [2.0, 2.0, -50.0, -50.0]])
    top = top_probability(logits)
    assert top == pytest.approx([0.25, 1.0, 0.5], abs=1e-3)
    assert top_probability(logits + 100.0) == pytest.approx(top)  # shift-invariant, stable


def test_fit_keeps_the_asked_share_of_validation_images() -> None:
    rng = np.random.default_rng(0)
    val = rng.normal(0, 1, (400, 4))
    val[:, 0] += rng.uniform(0, 8, 400)  # mostly confident, some not
    gate = fit_gate(val, acceptance=0.95)
    kept = ~gate.refuses(top_probability(val))
    assert 0.94 <= kept.mean() <= 0.97
    even = np.zeros((10, 4))  # an outlier taught to spread its belief evenly
    assert gate.refuses(top_probability(even)).all()


def test_record_round_trip_and_bad_input() -> None:
    gate = CellGate(0.42, 0.99)
    assert CellGate.from_config(gate.to_config()) == gate
    assert CellGate.from_config(None) is None
    with pytest.raises(ValueError, match="acceptance"):
        fit_gate(np.zeros((3, 4)), acceptance=1.0)
    with pytest.raises(ValueError, match="no validation images"):
        fit_gate(np.zeros((0, 4)))
