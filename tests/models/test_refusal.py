"""The one refusal rule: no white cell found first, then the out-of-scope detector, then the
cell-type gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tests.conftest import PURPLE_NUCLEUS, SMEAR_BACKGROUND, smear_field
from tests.models import make_run

from bloodcell.data.cells import CellFinder
from bloodcell.models.backends import Scored
from bloodcell.models.cell_gate import CellGate
from bloodcell.models.engines import open_model
from bloodcell.models.refusal import (
    NO_CELL_REASON,
    OTHER_CELL_REASON,
    UNLIKE_TRAINING_REASON,
    Refusal,
    refusals,
)

PROBS = np.full((4, 4), 0.25, np.float32)


def test_no_cell_then_unlike_the_training_images(tmp_path: Path) -> None:
    backend = open_model(make_run(tmp_path), "torch")
    finder = CellFinder()
    blank = finder.find(Image.new("RGB", (224, 224), SMEAR_BACKGROUND))
    cell = finder.find(smear_field(0, cells=((112, 112, 24, PURPLE_NUCLEUS),)))
    assert blank.count == 0 and cell.count >= 1
    t = backend.ood_threshold
    assert t is not None
    scores = np.array([t - 1, t - 1, t + 1, t - 1])
    assert refusals(backend, Scored(PROBS, scores), [blank, cell, cell, None]) == [
        Refusal(NO_CELL_REASON, True),
        Refusal(None, False),
        Refusal(UNLIKE_TRAINING_REASON, True),
        Refusal(None, False),
    ]
    # Without the detector's scores only the cell guard can refuse.
    assert refusals(backend, Scored(PROBS[:2]), [blank, cell]) == [
        Refusal(NO_CELL_REASON, True),
        Refusal(None, None),
    ]
    assert [r.refused for r in refusals(backend, Scored(PROBS[:2]), [blank, cell])] == [
        True,
        False,
    ]


def test_the_cell_type_gate_refuses_an_even_belief_after_the_detector(tmp_path: Path) -> None:
    backend = open_model(make_run(tmp_path), "torch")
    backend.cell_gate = CellGate(threshold=0.6, acceptance=0.99)
    finder = CellFinder()
    blank = finder.find(Image.new("RGB", (224, 224), SMEAR_BACKGROUND))
    cell = finder.find(smear_field(0, cells=((112, 112, 24, PURPLE_NUCLEUS),)))
    t = backend.ood_threshold
    assert t is not None
    scores = np.array([t - 1, t + 1, t - 1, t - 1])
    top = np.array([0.3, 0.3, 0.3, 0.9])
    assert refusals(backend, Scored(PROBS, scores, top), [blank, cell, cell, cell]) == [
        Refusal(NO_CELL_REASON, True),
        Refusal(UNLIKE_TRAINING_REASON, True),
        Refusal(OTHER_CELL_REASON, True),
        Refusal(None, False),
    ]
    # The gate alone (no detector scores) still says whether an image is in scope.
    assert refusals(backend, Scored(PROBS[:2], None, top[2:]), [cell, cell]) == [
        Refusal(OTHER_CELL_REASON, True),
        Refusal(None, False),
    ]
