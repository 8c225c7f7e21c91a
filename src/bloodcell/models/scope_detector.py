"""Out-of-scope detection: refuse to answer on images unlike the training smears.

A classifier gives one of its four classes to anything, a photo of coins included, and
temperature scaling only fixes confidence on images like the training data. So every model
carries a detector fitted on its own training split.

The score is a *multi-layer Mahalanobis distance* (Lee et al., NeurIPS 2018): at three depths
of the backbone (a third of the way, just past half, and the last block; `tap_blocks`) the
spatial mean of the activations is compared with the training images' class-conditional
Gaussians (`pytorch_ood.detector.Mahalanobis`, shared covariance). Each depth's distance is put
on a common scale by the validation split (0 at its median, 1 at its 99th percentile) and the
largest of the three is the score: a shallow layer catches another stain, camera or
magnification, the deepest catches cells that are not these classes. The reference set is the
clean training split *and* the training recipe's copies of it under random stain, light, focus,
compression and noise changes (at least one copy; the corruptions robustness training uses): a
darker or blurrier smear of the same kind stays in scope. Besides, an image of one flat colour
(no variation at all) is out of scope whatever its distances, with the score `BLANK_SCORE`.

The method was chosen by measurement against kNN distance, energy, max-softmax, single-layer
Mahalanobis and relative Mahalanobis on other labs' smears, ordinary pictures and corrupted
in-scope images (BENCHMARKS.md). The threshold is the combined score below which `acceptance`
(default 99%) of the validation split falls. The fitted state (class means, precision matrices,
the per-layer scales and the validation scores, to move the threshold later without the data)
is in `ood.safetensors` beside the weights; layers, threshold and acceptance are in
`config.json` (`ood`). The exported ONNX graph computes the same score itself
(`export.ScoredGraph`), so an `.onnx` file flags the same images on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bloodcell.errors import BloodcellError, ModelError
from bloodcell.records import ScopeDetectorRecord
from bloodcell.run_dir import SCOPE_DETECTOR_FILE, atomic

#: Share of in-scope (validation) images the threshold lets through unless told otherwise.
DEFAULT_ACCEPTANCE = 0.99
METHOD = "multi-layer mahalanobis"
#: Below this spread (`input_spread`, normalised pixel units) an image is one flat colour;
#: smears of the training data, corrupted or not, vary at least five times more.
BLANK_STD = 0.01
#: The score of a flat image: far beyond any threshold.
BLANK_SCORE = 1000.0
#: Where each layer's distance is put: 0 at the validation median, 1 at this quantile.
SCALE_QUANTILE = 0.99

Taps = Sequence[np.ndarray | torch.Tensor]


def tap_blocks(n_blocks: int) -> list[int]:
    """Backbone blocks the detector reads: about a third of the way, just past half, last."""
    return sorted({round(n_blocks / 3), round(n_blocks * 0.55), n_blocks - 1})


def input_spread(batch: torch.Tensor) -> torch.Tensor:
    """How much each preprocessed image varies: the largest of its channels' standard
    deviations over the pixels (0 for one flat colour, whatever the colour)."""
    return batch.flatten(2).std(dim=2).max(dim=1).values


@dataclass
class ScopeDetector:
    """Per-layer Gaussians of the training features, their scales, and the threshold."""

    layers: list[int]
    means: list[torch.Tensor]
    precisions: list[torch.Tensor]
    centers: torch.Tensor
    scales: torch.Tensor
    val_scores: np.ndarray
    acceptance: float = DEFAULT_ACCEPTANCE
    threshold: float = field(init=False)

    def __post_init__(self) -> None:
        from pytorch_ood.detector import Mahalanobis

        self._layers = []
        for mu, precision in zip(self.means, self.precisions, strict=True):
            det = Mahalanobis(None)
            det.mu, det.precision = mu.float(), precision.float()
            self._layers.append(det)
        self.threshold = threshold_for(self.val_scores, self.acceptance)

    def layer_scores(self, taps: Taps) -> torch.Tensor:
        """(L, N) Mahalanobis scores of each tapped layer, on the common scale."""
        raw = [
            det.predict_features(torch.as_tensor(np.asarray(z), dtype=torch.float32))
            for det, z in zip(self._layers, taps, strict=True)
        ]
        return (torch.stack(raw) - self.centers[:, None]) / self.scales[:, None]

    def score(self, taps: Taps, spread: np.ndarray | torch.Tensor) -> np.ndarray:
        """Out-of-scope score per image (higher is farther from the training data)."""
        if len(spread) == 0:
            return np.zeros((0,), dtype=np.float64)
        combined = self.layer_scores(taps).max(dim=0).values.double()
        blank = torch.as_tensor(np.asarray(spread)) < BLANK_STD
        return torch.where(blank, torch.tensor(BLANK_SCORE, dtype=torch.float64), combined).numpy()

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def with_acceptance(self, acceptance: float) -> ScopeDetector:
        return ScopeDetector(
            self.layers,
            self.means,
            self.precisions,
            self.centers,
            self.scales,
            self.val_scores,
            check_acceptance(acceptance),
        )

    def to_config(self) -> ScopeDetectorRecord:
        return {
            "method": METHOD,
            "layers": list(self.layers),
            "acceptance": self.acceptance,
            "threshold": self.threshold,
            "blank_std": BLANK_STD,
            "file": SCOPE_DETECTOR_FILE,
        }

    def save(self, model_dir: Path) -> ScopeDetectorRecord:
        from safetensors.torch import save_file

        tensors = {"centers": self.centers, "scales": self.scales}
        tensors["val_scores"] = torch.as_tensor(self.val_scores)
        for i, (mu, precision) in enumerate(zip(self.means, self.precisions, strict=True)):
            tensors[f"mean.{i}"], tensors[f"precision.{i}"] = mu, precision
        tensors = {k: v.contiguous().float() for k, v in tensors.items()}
        with atomic(Path(model_dir) / SCOPE_DETECTOR_FILE) as tmp:
            save_file(tensors, tmp, metadata={"method": METHOD})
        return self.to_config()

    @classmethod
    def load(cls, model_dir: Path, config: Mapping[str, Any] | None) -> ScopeDetector | None:
        """The detector saved with a model, or None for a model saved without one."""
        from safetensors.torch import load_file

        path = Path(model_dir) / SCOPE_DETECTOR_FILE
        if not config or not path.is_file():
            return None
        if config.get("method") != METHOD:
            raise ModelError(f"{path}: unknown out-of-scope method {config.get('method')!r}")
        t = load_file(path)
        n = len(config["layers"])
        return cls(
            list(config["layers"]),
            [t[f"mean.{i}"] for i in range(n)],
            [t[f"precision.{i}"] for i in range(n)],
            t["centers"],
            t["scales"],
            t["val_scores"].double().numpy(),
            float(config["acceptance"]),
        )


def check_acceptance(acceptance: float) -> float:
    if not 0.5 <= acceptance < 1.0:
        raise BloodcellError(
            f"in-scope acceptance must be at least 0.5 and below 1 (e.g. 0.99), got {acceptance}"
        )
    return float(acceptance)


def threshold_for(val_scores: np.ndarray, acceptance: float) -> float:
    """The smallest score that `acceptance` of the validation images do not exceed. Blank
    inputs (`BLANK_SCORE`: nothing left after preprocessing, e.g. no white cell found) are left
    out: the cell guard refuses them for what they are, and a few of them among the
    validation images would otherwise lift the threshold past every real score."""
    scores = np.asarray(val_scores, dtype=np.float64)
    scores = scores[scores < BLANK_SCORE] if (scores < BLANK_SCORE).any() else scores
    if len(scores) == 0:
        raise ModelError("cannot set an out-of-scope threshold on zero validation images")
    return float(np.quantile(scores, check_acceptance(acceptance), method="higher"))


def fit_detector(
    layers: Sequence[int],
    train_taps: Taps,
    train_labels: np.ndarray | torch.Tensor,
    val_taps: Taps,
    val_spread: np.ndarray | torch.Tensor,
    acceptance: float = DEFAULT_ACCEPTANCE,
) -> ScopeDetector:
    """Fit each layer's Gaussians on the reference features (every class must occur), scale
    each layer and set the threshold on the validation split's features."""
    from pytorch_ood.detector import Mahalanobis

    check_acceptance(acceptance)
    y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    means, precisions, raw = [], [], []
    for z, z_val in zip(train_taps, val_taps, strict=True):
        det = Mahalanobis(None).fit_features(torch.as_tensor(np.asarray(z)).float(), y)
        means.append(det.mu)
        precisions.append(det.precision)
        raw.append(det.predict_features(torch.as_tensor(np.asarray(z_val)).float()))
    stacked = torch.stack(raw)
    centers = stacked.median(dim=1).values
    top = torch.quantile(stacked, SCALE_QUANTILE, dim=1)
    scales = (top - centers).clamp(min=1e-6)
    unscaled = ScopeDetector(
        list(layers), means, precisions, centers, scales, np.zeros(1), acceptance
    )
    val_scores = unscaled.score(val_taps, val_spread)
    return ScopeDetector(list(layers), means, precisions, centers, scales, val_scores, acceptance)
