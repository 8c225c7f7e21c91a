"""Helpers shared by the predict tests: the console script, the keys of the JSON schema, and
how far apart two runs over the same images may put a score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BLOODCELL = Path(sys.executable).with_name("bloodcell")
PRED_KEYS = {
    "path",
    "label",
    "display_name",
    "confidence",
    "uncertain",
    "probabilities",
    "error",
    "out_of_scope",
    "reason",
    "cells",
    "cell_boxes",
    "scale",
    "rescaled",
    "ood_score",
    "prediction_set",
    "note",
    "engine",
}
GROUP_KEYS = {
    "folder",
    "n_images",
    "n_errors",
    "n_uncertain",
    "n_out_of_scope",
    "counts",
    "mean_probabilities",
}
#: The unusable files in the `mixed` fixture.
BAD = {"corrupt.jpg", "empty.jpg", "notes.txt"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BLOODCELL), *args], capture_output=True, text=True, timeout=180)


#: How far a score (a probability, the confidence, the ood_score) of one image may move between
#: two runs that batch it differently (another --batch-size, a resumed run, another thread count
#: or CPU): absolute, or relative to the score where that is larger. The float sums inside the
#: model depend on the batch; a 6-decimal score moves by a few units of its last digit.
SCORE_TOLERANCE = 1e-4
#: The fields of a prediction (and of a folder summary) that are such scores.
SCORE_FIELDS = ("confidence", "ood_score", "probabilities", "mean_probabilities")


def scores_within_tolerance(row: dict[str, Any]) -> dict[str, Any]:
    """`row` (a JSON prediction or folder summary) as the expected value of another run over
    the same images: every field must be equal, except that the scores may differ by
    SCORE_TOLERANCE. `got == scores_within_tolerance(want)`."""
    return {k: _approx(v) if k in SCORE_FIELDS else v for k, v in row.items()}


def _approx(v: Any) -> Any:
    if v is None:
        return None
    return pytest.approx(v, rel=SCORE_TOLERANCE, abs=SCORE_TOLERANCE)
