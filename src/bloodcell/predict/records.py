"""One answer per file (`Prediction`) and how a scored batch becomes those answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from bloodcell.models.backends import Backend, Scored
from bloodcell.models.conformal import describe_set, set_labels
from bloodcell.models.refusal import (
    NO_CELL_REASON,
    OTHER_CELL_REASON,
    UNLIKE_TRAINING_REASON,
    refusals,
)

if TYPE_CHECKING:
    from bloodcell.data.cells import Cells

#: What an out-of-scope row says instead of a class.
OUT_OF_SCOPE_NOTE = (
    "outside what this model was trained on (not a B-ALL smear image like its training data): "
    "no class is given"
)
#: What a row refused for having no white cell says instead of a class.
NO_CELL_NOTE = (
    "no white cell was found in the image: the class must come from the white cells, so no "
    "class is given"
)

#: What a row refused by the cell-type gate says instead of a class.
OTHER_CELL_NOTE = (
    "the white cell looks like none of the four B-lymphocyte classes this model knows (for "
    "example a neutrophil, monocyte or mature lymphocyte): no class is given"
)
#: The note of each refusal reason.
NOTES = {
    NO_CELL_REASON: NO_CELL_NOTE,
    UNLIKE_TRAINING_REASON: OUT_OF_SCOPE_NOTE,
    OTHER_CELL_REASON: OTHER_CELL_NOTE,
}


#: Column kinds (`columns`, `writers_parquet`): one column named after the field, holding text,
#: a float (6 decimals in CSV), a bool (`true`/`false` in CSV) or a list joined by '|'; or
#: `PER_LABEL`, one float column `<prefix>_<label>` per class label; or None, not a column.
STRING, FLOAT, BOOL, JOINED, PER_LABEL = "string", "float", "bool", "joined", "per_label"
#: An integer count column.
INT = "int"


def output(
    column: str | None,
    doc: str | None = None,
    *,
    api: str | None = "",
    prefix: str | None = None,
    default: Any = None,
) -> Any:
    """A Prediction field with what every output needs to show it, so a new field is declared
    once: its CSV/Parquet `column` kind, its `doc` (the API's description), its `api` name
    ("" = the field's own name, None = not in the API result) and a per-label column `prefix`."""
    meta = {"column": column, "doc": doc, "api": api, "prefix": prefix}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Prediction:
    """The answer for one file: a class with probabilities, or an error reason.

    The field order is the CSV/Parquet column order and the JSON key order.
    """

    #: The API names it `filename` and leaves it undescribed.
    path: str = output(STRING, api="filename", default=MISSING)
    label: str | None = output(STRING, "The answer; null when the image is out of scope.")
    display_name: str | None = output(STRING, "The answer in words; null when out of scope.")
    confidence: float | None = output(
        FLOAT, "Probability of the predicted class; null when out of scope."
    )
    uncertain: bool | None = output(
        BOOL,
        "Confidence below the model's threshold: review by hand. Null when out of scope.",
    )
    out_of_scope: bool | None = output(
        BOOL,
        "True when the image is unlike the smears the model was trained on (another "
        "magnification, stain, cell type or not a smear): no class is given. Null for a model "
        "without an out-of-scope detector.",
    )
    reason: str | None = output(
        STRING,
        f"Why no class is given: '{NO_CELL_REASON}' (the white-cell finder saw none), "
        f"'{UNLIKE_TRAINING_REASON}' (the out-of-scope detector) or '{OTHER_CELL_REASON}' "
        "(the cell-type gate); null when answered.",
    )
    cells: int | None = output(
        INT,
        "White cells the finder marked in the image (the answer must come from them); null "
        "when the finder was not run.",
    )
    scale: float | None = output(
        FLOAT,
        "How many times larger than in the training images the image shows its red cells "
        "(measured on them; about 1 at the training magnification); null when not measured "
        "or when no red cells could be measured.",
    )
    rescaled: bool | None = output(
        BOOL,
        "True when the image was resized to the training scale before the model saw it; "
        "null when the scale was not measured.",
    )
    ood_score: float | None = output(
        FLOAT,
        "Out-of-scope score (multi-layer Mahalanobis distance to the training "
        "images, 0 for a typical one; higher is farther). Above the model's `ood_threshold` "
        "the image is out of scope.",
    )
    prediction_set: list[str] | None = output(
        JOINED,
        "Conformal prediction set: every class label the image still fits, holding "
        "the true class with the model's stated coverage (`conformal_coverage`). Null when out "
        "of scope or when the model has no sets.",
    )
    probabilities: dict[str, float] | None = output(
        PER_LABEL,
        "Calibrated probability per class label (listed even when out of scope, "
        "where they mean little).",
        prefix="prob",
    )
    note: str | None = output(
        None,
        "Plain words for a set of two or more classes (e.g. 'Benign or Malignant "
        "Early Pre-B: ... confirm by flow cytometry') or for an out-of-scope image.",
    )
    #: Boxes (top, left, bottom, right, in the image's pixels) of the white cells found; the
    #: page outlines them. Not a column.
    cell_boxes: list[list[int]] | None = output(
        None, "Boxes [top, left, bottom, right] of the white cells found, in image pixels."
    )
    #: Not in an API result: the response names the engine once for all its results.
    engine: str | None = output(
        STRING, 'The engine that answered ("onnx-int8", "onnx" or "torch").', api=None
    )
    #: Not in an API result: a file the server cannot read fails the request instead.
    error: str | None = output(
        STRING, "Why the file could not be read; null when it was.", api=None
    )

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        """The JSON object documented in the package docstring (values not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def to_predictions(
    names: Sequence[str],
    scored: Scored,
    backend: Backend,
    threshold: float,
    cells: Sequence[Cells | None] | None = None,
) -> list[Prediction]:
    """Turn a scored batch into Prediction records.

    An out-of-scope image gets no class (label, confidence and set are empty; the probabilities
    stay for the record): one in which the white-cell finder saw no cell (`cells`, one per
    image, None where the guard is off), or one the detector scores as unlike the training
    images. Otherwise the answer is the top class, flagged `uncertain` below the threshold,
    with the conformal set of the classes that remain possible.
    """
    found = list(cells) if cells is not None else [None] * len(names)
    refused = refusals(backend, scored, found)
    sets = None
    if backend.conformal is not None:
        sets = set_labels(backend.conformal.sets(scored.probs), backend.labels)
    out = []
    for j, (name, row) in enumerate(zip(names, scored.probs, strict=True)):
        why = refused[j]
        common = {
            "path": name,
            "engine": backend.engine,
            "probabilities": dict(zip(backend.labels, _rounded(row), strict=True)),
            "out_of_scope": why.out_of_scope,
            "reason": why.reason,
            "ood_score": None if scored.ood_score is None else round(float(scored.ood_score[j]), 6),
            **_cell_fields(found[j]),
        }
        if why.refused:
            out.append(Prediction(**common, note=NOTES[why.reason or UNLIKE_TRAINING_REASON]))
            continue
        i = int(np.argmax(row))
        label = backend.labels[i]
        members = sets[j] if sets is not None else None
        out.append(
            Prediction(
                **common,
                label=label,
                display_name=backend.display_names.get(label, label),
                confidence=round(float(row[i]), 6),
                uncertain=float(row[i]) < threshold,
                prediction_set=members,
                note=describe_set(members or [], backend.display_names),
            )
        )
    return out


def _cell_fields(cells: Cells | None) -> dict[str, Any]:
    if cells is None:
        return {}
    found = {"cells": cells.count, "cell_boxes": [list(map(int, b)) for b in cells.boxes]}
    if cells.scale is None and not cells.rescaled:
        return found
    scale = None if cells.scale is None else round(float(cells.scale), 3)
    return {**found, "scale": scale, "rescaled": cells.rescaled}


def _rounded(row: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in row]
