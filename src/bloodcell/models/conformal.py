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

At prediction time no conformal library is needed: crepes' non-smoothed set at a coverage is
exactly the classes whose hinge score is at most one of the calibration scores (`quantile_of`),
which calibration stores beside them (`quantile`; for a model calibrated before it was
stored, it is computed from the stored scores when the model is opened). A set at the model's
coverage is then one comparison in NumPy; another coverage still goes through crepes, and the
tests hold the two to the same sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bloodcell.records import ConformalRecord

#: Coverage of the prediction sets unless the user asks for another.
DEFAULT_COVERAGE = 0.95
#: Pairs that need another test to tell apart, and which one (shown beside such a set).
CONFIRM_BY = {frozenset({"benign", "early_pre_b"}): "flow cytometry"}


@dataclass(frozen=True)
class ConformalSets:
    """Calibration scores plus the default coverage; `sets(probs)` gives the class sets.

    `quantile` is `quantile_of(scores, coverage)` (`from_config` always sets it); with it, a
    set at `coverage` needs no conformal library, without it crepes is asked.
    """

    scores: np.ndarray
    coverage: float = DEFAULT_COVERAGE
    quantile: float | None = None

    def sets(self, probs: np.ndarray, coverage: float | None = None) -> np.ndarray:
        """Boolean (N, C) membership of each class in each image's set (top class always in)."""
        coverage = self.coverage if coverage is None else check_coverage(coverage)
        probs = np.asarray(probs, dtype=np.float64)
        if len(probs) == 0:
            return np.zeros(probs.shape, dtype=bool)
        if self.quantile is not None and coverage == self.coverage:
            member = (1.0 - probs) <= self.quantile  # crepes' hinge score, its set (see above)
        else:
            member = self.crepes_sets(probs, coverage)
        member[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return member

    def crepes_sets(self, probs: np.ndarray, coverage: float) -> np.ndarray:
        """crepes' own non-smoothed sets (without the top-class rule): the reference."""
        from crepes import ConformalClassifier
        from crepes.extras import hinge

        cc = ConformalClassifier().fit(self.scores)
        return cc.predict_set(hinge(probs), confidence=coverage, smoothing=False).astype(bool)

    def to_config(self) -> ConformalRecord:
        scores = [round(float(s), 8) for s in self.scores]
        return {
            "method": "split conformal, hinge score (crepes)",
            "coverage": self.coverage,
            "scores": scores,
            # Of the scores as stored (rounded), so that a reloaded model answers the same.
            "quantile": quantile_of(np.asarray(scores, dtype=np.float64), self.coverage),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ConformalSets | None:
        if not config or not config.get("scores"):
            return None
        scores = np.asarray(config["scores"], dtype=np.float64)
        coverage = float(config["coverage"])
        quantile = config.get("quantile")
        if quantile is None:  # calibrated before it was stored: the same number, from the scores
            quantile = quantile_of(scores, coverage)
        return cls(scores, coverage, float(quantile))


def quantile_of(scores: np.ndarray, coverage: float) -> float:
    """The largest hinge score that crepes' non-smoothed set at `coverage` still admits.

    crepes admits a class of hinge score `a` when its p-value, (#{scores >= a} + 1) / (n + 1),
    is at least 1 - coverage, i.e. when at least `k` calibration scores are >= a, `k` the
    smallest count for which that float comparison holds. That is `a <= the k-th largest
    score`; with k = 0 every class is admitted (hinge scores are at most 1).
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    n = len(ordered)
    if n == 0:
        raise ValueError("no calibration scores")
    k = next(k for k in range(n + 1) if (k + 1) / (n + 1) >= 1 - coverage)
    return 1.0 if k == 0 else float(ordered[k - 1])


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
