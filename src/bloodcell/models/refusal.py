"""When the model gives no class: the one rule `predict` (every answer that leaves bloodcell)
and the shortcut audit (`evaluation.audit`) both apply.

An image is refused when the white-cell finder saw no white cell in it (the class must come
from the white cells), or when the out-of-scope detector scores it as unlike the training
images. It sits in the model layer because both the evaluation and the predict layers use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bloodcell.data.cells import Cells
    from bloodcell.models.backends import Backend

#: The two reasons an image gets no class (`predict.records.Prediction.reason`).
NO_CELL_REASON = "no white cell found"
UNLIKE_TRAINING_REASON = "unlike the training images"


@dataclass(frozen=True)
class Refusal:
    """Whether one image is answered: why not (None when it is), and its out-of-scope flag
    (None when neither the cell guard nor a detector could say)."""

    reason: str | None
    out_of_scope: bool | None

    @property
    def refused(self) -> bool:
        return self.reason is not None


def refusals(
    backend: Backend, ood_score: np.ndarray | None, cells: Sequence[Cells | None]
) -> list[Refusal]:
    """One `Refusal` per image of a scored batch: `cells` holds what the finder saw in each
    (None where the cell guard is off), `ood_score` the detector's scores (None without one)."""
    flags = backend.out_of_scope(ood_score)
    out = []
    for j, found in enumerate(cells):
        no_cell = found is not None and found.count == 0
        unlike = flags is not None and bool(flags[j])
        if no_cell:
            out.append(Refusal(NO_CELL_REASON, True))
        else:
            flag = None if flags is None else unlike
            out.append(Refusal(UNLIKE_TRAINING_REASON if unlike else None, flag))
    return out
