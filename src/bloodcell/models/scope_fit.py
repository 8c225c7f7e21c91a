"""Fit a saved model's out-of-scope detector on the data it was trained on.

Part of training (and so of `bloodcell run`): once the model is final, its tapped activations
(`models.scope_detector`) over the clean training split and over corrupted copies of it become the
detector's reference, and the validation split sets the scales and the threshold for the
chosen in-scope acceptance. Both are saved into the model directory.

Two ways to get those activations, with the same result:

- `fit_model_scope`: one pass of the final model over datasets of images;
- `ScopeRecorder`: when training caches the frozen front of the model, the taps inside that
  front are recorded while it is cached (they cannot change: those blocks are frozen), and only
  the trained blocks after it run again over the cached outputs. That saves most of a minute
  on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from bloodcell.models.fusion import fused_blocks
from bloodcell.models.saved import load_model, update_config
from bloodcell.models.scope_detector import (
    DEFAULT_ACCEPTANCE,
    fit_detector,
    input_spread,
    tap_blocks,
)
from bloodcell.models.torch_backend import dataset_taps
from bloodcell.records import ScopeDetectorRecord

if TYPE_CHECKING:
    from bloodcell.models.registry import Classifier

VAL = "val"


def fit_model_scope(
    model_dir: str | Path,
    train: Dataset,
    corrupted: Sequence[Dataset],
    val: Dataset,
    train_labels: np.ndarray,
    acceptance: float = DEFAULT_ACCEPTANCE,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit, threshold, save (one pass over images); returns the detector's config.

    `train` and each of `corrupted` hold the same images (clean, and under random corruptions)
    with class indices `train_labels`; all datasets yield preprocessed tensors.
    """
    loaded = load_model(model_dir)
    layers = tap_blocks(len(loaded.model.backbone))

    def taps(dataset: Dataset, name: str) -> tuple[list[np.ndarray], np.ndarray]:
        label = f"out-of-scope reference, {name}" if progress else None
        return dataset_taps(loaded.model, dataset, layers, progress=label)

    reference = [taps(train, "train")[0]]
    reference += [taps(c, f"corrupted copy {i + 1}")[0] for i, c in enumerate(corrupted)]
    val_taps, val_spread = taps(val, "val")
    labels = np.concatenate([train_labels] * len(reference))
    config = save_detector(
        loaded.path, layers, _stack(reference), labels, val_taps, val_spread, acceptance
    )
    return dict(config)  # as a plain dict, what `train.scope.fit_scope` passes on


def save_detector(
    model_dir: Path,
    layers: list[int],
    reference: list[np.ndarray],
    labels: np.ndarray,
    val_taps: list[np.ndarray],
    val_spread: np.ndarray,
    acceptance: float,
) -> ScopeDetectorRecord:
    detector = fit_detector(layers, reference, labels, val_taps, val_spread, acceptance)
    config = detector.save(model_dir)
    update_config(model_dir, ood=config)
    return config


def _stack(per_dataset: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-dataset lists of per-layer arrays -> one array per layer, datasets one after another."""
    return [np.concatenate(layer) for layer in zip(*per_dataset, strict=True)]


class ScopeRecorder:
    """Records what the detector needs while training caches the frozen front of the model.

    `start` is where the cached outputs enter the model (a block index, or "pooled" when the
    whole backbone is frozen), `blocks` are the frozen blocks that caching runs (indexed as
    in the backbone of `n_blocks` blocks). Taps before `start` are recorded by forward hooks on
    them during caching; the rest are computed after training from the cached outputs by `fit`.
    """

    def __init__(self, blocks: nn.Sequential, n_blocks: int, start: int | str) -> None:
        self.blocks = blocks
        self.layers = tap_blocks(n_blocks)
        self.start = n_blocks if start == "pooled" else int(start)
        self.shallow: dict[str, dict[int, list[torch.Tensor]]] = {}
        self.spread: dict[str, list[torch.Tensor]] = {}
        self.cached: dict[str, TensorDataset] = {}

    @contextmanager
    def recording(self, name: str) -> Iterator[None]:
        """Inside: every forward pass of the backbone adds to the record of dataset `name`."""
        taps: dict[int, list[torch.Tensor]] = {i: [] for i in self.layers if i < self.start}
        spread: list[torch.Tensor] = []
        self.shallow[name], self.spread[name] = taps, spread

        def pooled(i: int) -> Any:
            return lambda _m, _i, out: taps[i].append(out.mean(dim=(2, 3)).float().cpu())

        handles = [self.blocks[i].register_forward_hook(pooled(i)) for i in taps]
        handles.append(
            self.blocks[0].register_forward_pre_hook(
                lambda _m, args: spread.append(input_spread(args[0]).float().cpu())
            )
        )
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def keep(self, name: str, cached: TensorDataset) -> TensorDataset:
        """Remember a dataset's cached outputs (features, targets) for the deep taps."""
        self.cached[name] = cached
        return cached

    @torch.inference_mode()
    def taps(self, model: Classifier, name: str, batch_size: int = 256) -> list[np.ndarray]:
        """All tapped layers of dataset `name`: recorded ones, then the final model's blocks
        from `start` on over its cached outputs."""
        deep: dict[int, list[torch.Tensor]] = {i: [] for i in self.layers if i >= self.start}
        if deep:
            features = self.cached[name].tensors[0]
            # BatchNorm folded in and channels-last: the same sums, about twice as fast
            blocks = fused_blocks(model.backbone[self.start :]).to(
                memory_format=torch.channels_last
            )
            for b in range(0, len(features), batch_size):
                h = features[b : b + batch_size].contiguous(memory_format=torch.channels_last)
                for j, block in enumerate(blocks, start=self.start):
                    h = block(h)
                    if j in deep:
                        deep[j].append(h.mean(dim=(2, 3)).float())
        out = []
        for i in self.layers:
            parts = self.shallow[name][i] if i < self.start else deep[i]
            out.append(torch.cat(parts).numpy())
        return out

    def fit(
        self, model: Classifier, model_dir: Path, acceptance: float = DEFAULT_ACCEPTANCE
    ) -> ScopeDetectorRecord:
        """Fit, threshold and save the detector of the final `model`; returns its config."""
        names = [n for n in self.cached if n != VAL]
        reference = _stack([self.taps(model, n) for n in names])
        labels = torch.cat([self.cached[n].tensors[1] for n in names]).numpy()
        val_spread = torch.cat(self.spread[VAL]).numpy()
        val = self.taps(model, VAL)
        return save_detector(model_dir, self.layers, reference, labels, val, val_spread, acceptance)
