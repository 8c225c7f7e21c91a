"""The one refusal rule: no white cell found first, then the out-of-scope detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tests.conftest import PURPLE_NUCLEUS, SMEAR_BACKGROUND, smear_field
from tests.models import make_run

from bloodcell.data.cells import CellFinder
from bloodcell.models.engines import open_model
from bloodcell.models.refusal import NO_CELL_REASON, UNLIKE_TRAINING_REASON, Refusal, refusals


def test_no_cell_then_unlike_the_training_images(tmp_path: Path) -> None:
    backend = open_model(make_run(tmp_path), "torch")
    finder = CellFinder()
    blank = finder.find(Image.new("RGB", (224, 224), SMEAR_BACKGROUND))
    cell = finder.find(smear_field(0, cells=((112, 112, 24, PURPLE_NUCLEUS),)))
    assert blank.count == 0 and cell.count >= 1
    t = backend.ood_threshold
    assert t is not None
    scores = np.array([t - 1, t - 1, t + 1, t - 1])
    assert refusals(backend, scores, [blank, cell, cell, None]) == [
        Refusal(NO_CELL_REASON, True),
        Refusal(None, False),
        Refusal(UNLIKE_TRAINING_REASON, True),
        Refusal(None, False),
    ]
    # Without the detector's scores only the cell guard can refuse.
    assert refusals(backend, None, [blank, cell]) == [
        Refusal(NO_CELL_REASON, True),
        Refusal(None, None),
    ]
    assert [r.refused for r in refusals(backend, None, [blank, cell])] == [True, False]
