"""Conformal prediction sets: the classes that remain possible, with a coverage guarantee.

A single label hides the cases where two classes stay plausible; hematogones (Benign) against
Early Pre-B blasts is the usual one, and a lab settles it by flow cytometry, not by morphology.
Split conformal prediction (crepes' `ConformalClassifier` with the hinge score 1 - p(true
class)) turns the calibrated probabilities into a set of classes that contains the true class
with probability at least the chosen coverage, on images like the calibration (validation)
split. The fitted state is just those calibration scores; they are saved in the model's
`config.json` (`conformal`), so any coverage can be asked for later without the data.

The set always holds the top class: on a very accurate model an image can otherwise get an
empty set, which a reader would take as "no class" rather than "the model is sure".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Coverage of the prediction sets unless the user asks for another.
DEFAULT_COVERAGE = 0.95
#: Pairs that need another test to tell apart, and which one (shown beside such a set).
CONFIRM_BY = {frozenset({"benign", "early_pre_b"}): "flow cytometry"}


@dataclass(frozen=True)
class ConformalSets:
    """Calibration scores plus the default coverage; `sets(probs)` gives the class sets."""

    scores: np.ndarray
    coverage: float = DEFAULT_COVERAGE

    def sets(self, probs: np.ndarray, coverage: float | None = None) -> np.ndarray:
        """Boolean (N, C) membership of each class in each image's set (top class always in)."""
        from crepes import ConformalClassifier
        from crepes.extras import hinge

        coverage = self.coverage if coverage is None else check_coverage(coverage)
        probs = np.asarray(probs, dtype=np.float64)
        if len(probs) == 0:
            return np.zeros(probs.shape, dtype=bool)
        cc = ConformalClassifier().fit(self.scores)
        member = cc.predict_set(hinge(probs), confidence=coverage, smoothing=False).astype(bool)
        member[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return member

    def to_config(self) -> dict[str, Any]:
        return {
            "method": "split conformal, hinge score (crepes)",
            "coverage": self.coverage,
            "scores": [round(float(s), 8) for s in self.scores],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ConformalSets | None:
        if not config or not config.get("scores"):
            return None
        return cls(np.asarray(config["scores"], dtype=np.float64), float(config["coverage"]))


def check_coverage(coverage: float) -> float:
    from bloodcell.errors import BloodcellError

    if not 0.0 < coverage < 1.0:
        raise BloodcellError(f"coverage must be between 0 and 1 (e.g. 0.95), got {coverage}")
    return float(coverage)


def fit_conformal(
    probs: np.ndarray, targets: np.ndarray, coverage: float = DEFAULT_COVERAGE
) -> ConformalSets:
    """Fit on calibrated validation probabilities and their true class indices."""
    from crepes.extras import hinge

    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        raise ValueError("cannot fit prediction sets on zero images")
    classes = np.arange(probs.shape[1])
    return ConformalSets(hinge(probs, classes, targets), check_coverage(coverage))


def set_labels(member: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """Label lists of a boolean membership matrix, in the model's class order."""
    return [[lab for lab, m in zip(labels, row, strict=True) if m] for row in member]


def describe_set(labels: Sequence[str], display_names: dict[str, str]) -> str | None:
    """Plain words for a set of more than one class, e.g. 'Benign or Malignant Early Pre-B:
    the image fits both; confirm by flow cytometry'. None for a single class."""
    if len(labels) < 2:
        return None
    names = [display_names.get(lab, lab) for lab in labels]
    text = ", ".join(names[:-1]) + " or " + names[-1] + ": the image fits "
    text += "both" if len(names) == 2 else f"all {len(names)}"
    confirm = CONFIRM_BY.get(frozenset(labels))
    return text + (f"; confirm by {confirm}" if confirm else "; review by hand")
