"""One answer per file (`Prediction`) and how a scored batch becomes those answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bloodcell.models.backends import Backend, Scored
from bloodcell.models.conformal import describe_set, set_labels

#: What an out-of-scope row says instead of a class.
OUT_OF_SCOPE_NOTE = (
    "outside what this model was trained on (not a B-ALL smear image like its training data): "
    "no class is given"
)


@dataclass(frozen=True)
class Prediction:
    """The answer for one file: a class with probabilities, or an error reason."""

    path: str
    label: str | None = None
    display_name: str | None = None
    confidence: float | None = None
    uncertain: bool | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    out_of_scope: bool | None = None
    ood_score: float | None = None
    prediction_set: list[str] | None = None
    note: str | None = None
    #: The engine that answered ("onnx-int8", "onnx" or "torch"; `models.engines`).
    engine: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in the package docstring."""
        return {
            "path": self.path,
            "label": self.label,
            "display_name": self.display_name,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "probabilities": self.probabilities,
            "out_of_scope": self.out_of_scope,
            "ood_score": self.ood_score,
            "prediction_set": self.prediction_set,
            "note": self.note,
            "engine": self.engine,
            "error": self.error,
        }


def to_predictions(
    names: Sequence[str], scored: Scored, backend: Backend, threshold: float
) -> list[Prediction]:
    """Turn a scored batch into Prediction records.

    An out-of-scope image gets no class (label, confidence and set are empty; the probabilities
    stay for the record). Otherwise the answer is the top class, flagged `uncertain` below the
    threshold, with the conformal set of the classes that remain possible.
    """
    flags = backend.out_of_scope(scored.ood_score)
    sets = None
    if backend.conformal is not None:
        sets = set_labels(backend.conformal.sets(scored.probs), backend.labels)
    out = []
    for j, (name, row) in enumerate(zip(names, scored.probs, strict=True)):
        common = {
            "path": name,
            "engine": backend.kind,
            "probabilities": dict(zip(backend.labels, _rounded(row), strict=True)),
            "out_of_scope": None if flags is None else bool(flags[j]),
            "ood_score": None if scored.ood_score is None else round(float(scored.ood_score[j]), 6),
        }
        if flags is not None and flags[j]:
            out.append(Prediction(**common, note=OUT_OF_SCOPE_NOTE))
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


def _rounded(row: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in row]
