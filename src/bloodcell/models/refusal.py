"""When the model gives no class: the one rule `predict` (every answer that leaves bloodcell)
and the shortcut audit (`evaluation.shortcut_audit`) both apply.

An image is refused when the white-cell finder saw no white cell in it (the class must come
from the white cells), when the out-of-scope detector scores it as unlike the training
images, or when the cell-type gate (`models.cell_gate`) sees a white cell of a type the model
was not taught to name. It sits in the model layer because both the evaluation and the
predict layers use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bloodcell.data.cells import Cells
    from bloodcell.models.backends import Backend, Scored

#: The reasons an image gets no class (`predict.records.Prediction.reason`).
NO_CELL_REASON = "no white cell found"
UNLIKE_TRAINING_REASON = "unlike the training images"
OTHER_CELL_REASON = "a white cell of a type this model does not classify"


@dataclass(frozen=True)
class Refusal:
    """Whether one image is answered: why not (None when it is), and its out-of-scope flag
    (None when neither the cell guard nor a detector could say)."""

    reason: str | None
    out_of_scope: bool | None

    @property
    def refused(self) -> bool:
        return self.reason is not None


def refusals(backend: Backend, scored: Scored, cells: Sequence[Cells | None]) -> list[Refusal]:
    """One `Refusal` per image of a scored batch: `cells` holds what the finder saw in each
    (None where the cell guard is off), `scored` the engine's answers (out-of-scope scores
    None without a detector, the gate's top probabilities)."""
    flags = backend.out_of_scope(scored.ood_score)
    gate = backend.cell_gate
    other = None if gate is None or scored.top is None else gate.refuses(scored.top)
    out = []
    for j, found in enumerate(cells):
        if found is not None and found.count == 0:
            out.append(Refusal(NO_CELL_REASON, True))
        elif flags is not None and bool(flags[j]):
            out.append(Refusal(UNLIKE_TRAINING_REASON, True))
        elif other is not None and bool(other[j]):
            out.append(Refusal(OTHER_CELL_REASON, True))
        else:
            known = flags is not None or other is not None
            out.append(Refusal(None, False if known else None))
    return out
