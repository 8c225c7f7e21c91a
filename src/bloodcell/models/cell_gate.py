"""The cell-type gate: refuse white cells of a type the model was never taught to name.

Why: the classes are four kinds of B-lymphocyte (hematogones and three blasts), but a smear also
holds neutrophils, eosinophils, monocytes, mature lymphocytes, platelets and more. A classifier
must give each image one of its four labels, so without a gate a neutrophil comes out as
"Malignant Pre-B". With outlier exposure (Hendrycks et al. 2019, `train.outliers`), training
teaches the model to spread its belief evenly over the four classes for such cells; the gate
then refuses an image whose largest class probability (at temperature 1, before calibration)
is below a threshold chosen to keep a share (`acceptance`) of the validation images.

The score is a function of the logits alone, so every engine (torch, ONNX fp32, int8) computes
it the same way from what it already returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bloodcell.records import CellGateRecord

#: Share of in-scope validation images the gate keeps by default.
DEFAULT_ACCEPTANCE = 0.995


def top_probability(logits: np.ndarray) -> np.ndarray:
    """The largest softmax probability (temperature 1) of each row of `logits` (N, C)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e.max(axis=-1) / e.sum(axis=-1)).astype(np.float64)


@dataclass(frozen=True)
class CellGate:
    """Refuse an image whose top probability is below `threshold`."""

    threshold: float
    acceptance: float

    def refuses(self, top: np.ndarray) -> np.ndarray:
        """Which images the gate refuses, from their `top_probability`."""
        return np.asarray(top) < self.threshold

    def to_config(self) -> CellGateRecord:
        return {
            "method": "outlier exposure, top probability",
            "threshold": self.threshold,
            "acceptance": self.acceptance,
        }

    @classmethod
    def from_config(cls, config: CellGateRecord | Mapping[str, Any] | None) -> CellGate | None:
        """The gate a model's config records (None for a model without one)."""
        if not config:
            return None
        return cls(float(config["threshold"]), float(config["acceptance"]))


def fit_gate(val_logits: np.ndarray, acceptance: float = DEFAULT_ACCEPTANCE) -> CellGate:
    """The threshold that keeps `acceptance` of the validation images (their logits)."""
    if not 0.5 <= acceptance < 1.0:
        raise ValueError(f"acceptance must be in [0.5, 1), not {acceptance}")
    top = top_probability(val_logits)
    if top.size == 0:
        raise ValueError("no validation images to set the cell-type gate's threshold")
    threshold = float(np.quantile(top, 1.0 - acceptance, method="lower"))
    return CellGate(round(threshold, 6), acceptance)
