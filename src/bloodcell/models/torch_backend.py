"""The torch engine, `TorchBackend`, and the loops over a torch `Dataset` that calibration,
evaluation and export share (`dataset_outputs`, `dataset_taps`).

Apart from `models.backends` because it imports torch: prediction with an ONNX engine never
loads this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bloodcell.data.batches import made_ahead
from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.backends import ArrayLike, Backend, Outputs
from bloodcell.models.cell_gate import CellGate
from bloodcell.models.conformal import ConformalSets
from bloodcell.models.fusion import fused_classifier
from bloodcell.models.saved import LoadedModel, saved_scope_detector
from bloodcell.models.scope_detector import ScopeDetector, input_spread
from bloodcell.records import ScopeDetectorRecord

if TYPE_CHECKING:
    from bloodcell.models.registry import Classifier


class TorchBackend(Backend):
    """A saved model run by torch eager on the CPU (also what Grad-CAM needs)."""

    engine = "torch"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        # Channels-last (NHWC): the same sums, faster convolutions on a CPU (BENCHMARKS.md).
        self.model = loaded.model.to(memory_format=torch.channels_last)
        self._fast: Classifier | None = None
        self.path = loaded.path
        cfg = loaded.config
        self.config = cfg
        self.architecture = loaded.architecture
        self.labels = loaded.labels
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = loaded.preprocess
        self.temperature = loaded.temperature
        self.uncertain_threshold = loaded.uncertain_threshold
        self._has_scope_detector = saved_scope_detector(loaded.path, cfg) is not None
        self._scope_detector: ScopeDetector | None = None
        self.conformal = ConformalSets.from_config(cfg.get("conformal"))
        self.cell_gate = CellGate.from_config(cfg.get("cell_gate"))

    @property
    def scope_detector(self) -> ScopeDetector | None:
        """The out-of-scope detector (None without one), read from `ood.safetensors` (and
        pytorch-ood imported) when it is first needed, not when the model is opened."""
        if self._scope_detector is None and self._has_scope_detector:
            self._scope_detector = ScopeDetector.load(self.path, self.config.get("ood"))
        return self._scope_detector

    @property
    def ood_threshold(self) -> float | None:  # type: ignore[override]
        return self.scope_detector.threshold if self.scope_detector else None

    @property
    def scope_info(self) -> ScopeDetectorRecord | None:  # type: ignore[override]
        return self.scope_detector.to_config() if self.scope_detector else None

    @property
    def fast(self) -> Classifier:
        """What `run` uses: `model` with BatchNorm folded into the convolutions, faster again.
        Made on first use (an ONNX engine opened beside this one never needs it); `model`
        stays as trained for Grad-CAM, which needs its gradients."""
        if self._fast is None:
            self._fast = fused_classifier(self.model).to(memory_format=torch.channels_last)
        return self._fast

    @torch.inference_mode()
    def run(self, batch: ArrayLike) -> Outputs:
        x = torch.as_tensor(batch, dtype=torch.float32)
        x = x.contiguous(memory_format=torch.channels_last)
        detector = self.scope_detector
        if detector is None:
            return Outputs(self.fast(x).float().numpy())
        logits, taps = self.fast.forward_with_taps(x, detector.layers)
        return Outputs(logits.float().numpy(), detector.score(taps, input_spread(x)))


def dataset_logits(
    backend: Backend, dataset: Dataset, batch_size: int = 64, num_workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and integer targets (N,) over a `(tensor, target)` dataset, in order."""
    outputs, targets = dataset_outputs(backend, dataset, batch_size, num_workers)
    return outputs.logits, targets


def dataset_outputs(
    backend: Backend,
    dataset: Dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: str | None = None,
) -> tuple[Outputs, np.ndarray]:
    """Logits, out-of-scope scores and integer targets over a `(tensor, target)` dataset.

    Shared by calibration, evaluation and export so all see exactly the same numbers.
    `progress` names a progress bar (none when None).
    """
    from tqdm import tqdm

    logits, scores, targets = [], [], []
    batches = torch_batches(dataset, batch_size, num_workers)
    if progress:
        batches = tqdm(
            batches, desc=progress, unit="batch", total=-(-len(cast(Sized, dataset)) // batch_size)
        )
    for x, y in batches:
        out = backend.run(x)
        logits.append(out.logits)
        scores.append(out.ood_score)
        targets.append(np.asarray(y))
    if not logits:
        empty = np.zeros((0, len(backend.labels)), np.float32)
        return Outputs(empty, None), np.zeros((0,), np.int64)
    present = [s for s in scores if s is not None]
    return (
        Outputs(
            np.concatenate(logits), np.concatenate(present) if len(present) == len(scores) else None
        ),
        np.concatenate(targets).astype(np.int64),
    )


@torch.inference_mode()
def dataset_taps(
    model: Classifier,
    dataset: Dataset,
    layers: list[int],
    batch_size: int = 64,
    progress: str | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """What the out-of-scope detector is fitted on, over a dataset in order: the tapped
    layers' pooled activations (one (N, D) array per layer) and each image's pixel spread."""
    from tqdm import tqdm

    model.eval().to(memory_format=torch.channels_last)  # the same sums, 1.7x faster on a CPU
    batches = torch_batches(dataset, batch_size, 0)
    if progress:
        batches = tqdm(
            batches, desc=progress, unit="batch", total=-(-len(cast(Sized, dataset)) // batch_size)
        )
    taps: list[list[np.ndarray]] = [[] for _ in layers]
    spread = []
    for x, _ in batches:
        x = x.float()
        nhwc = x.contiguous(memory_format=torch.channels_last)
        for i, z in enumerate(model.forward_with_taps(nhwc, layers)[1]):
            taps[i].append(z.float().numpy())
        spread.append(input_spread(x).numpy())
    return [np.concatenate(t) for t in taps], np.concatenate(spread)


def torch_batches(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[tuple]:
    """The dataset's (inputs, targets) batches, in order: made by worker processes, or without
    them by threads while the caller runs the model (`data.batches.made_ahead`)."""
    if num_workers:
        yield from DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers)
        return
    from torch.utils.data import default_collate

    n = len(cast(Sized, dataset))
    for items in made_ahead(dataset.__getitem__, range(n), batch_size):
        yield default_collate(items)
