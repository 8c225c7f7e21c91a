"""grouping: per-folder counts and mean probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.predict import GROUP_KEYS

from bloodcell.labels import LABELS
from bloodcell.predict.grouping import group_by_folder
from bloodcell.predict.stream import predict_paths


def test_grouping(backend, mixed: Path) -> None:
    preds = [p for b in predict_paths(backend, [mixed]) for p in b]
    groups = {
        Path(g["folder"]).relative_to(mixed).as_posix(): g for g in group_by_folder(preds, LABELS)
    }
    assert set(groups) == {"slide1/" + lb for lb in LABELS} | {"slide2/" + lb for lb in LABELS} | {
        "slide2"
    }
    g = groups["slide1/benign"]
    assert set(g) == GROUP_KEYS
    assert g["n_images"] == 2 and g["n_errors"] == 1 and sum(g["counts"].values()) == 2
    mine = [p for p in preds if p.ok and Path(p.path).parent == mixed / "slide1" / "benign"]
    for lb in LABELS:
        expect = np.mean([p.probabilities[lb] for p in mine])
        assert g["mean_probabilities"][lb] == pytest.approx(expect, abs=1e-6)
    assert groups["slide2"] == {
        "folder": str(mixed / "slide2"),
        "n_images": 0,
        "n_errors": 1,
        "n_uncertain": 0,
        "n_out_of_scope": 0,
        "counts": dict.fromkeys(LABELS, 0),
        "mean_probabilities": None,
    }
