"""Helpers shared by the predict tests: the console script and the keys of the JSON schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
