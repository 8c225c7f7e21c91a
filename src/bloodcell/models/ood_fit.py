"""Fit a saved model's out-of-scope detector on the data it was trained on.

Part of training (and so of `bloodcell run`): once the model is final, its tapped activations
over the clean training split and over one corrupted copy of it become the detector's
reference (`models.ood`), and the validation split sets the scales and the threshold for the
chosen in-scope acceptance. Both are saved into the model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from bloodcell.models.backends import dataset_taps
from bloodcell.models.ood import DEFAULT_ACCEPTANCE, fit_detector, tap_blocks
from bloodcell.models.saved import load_model, update_config


def fit_model_ood(
    model_dir: str | Path,
    train: Dataset,
    train_corrupted: Dataset,
    val: Dataset,
    train_labels: np.ndarray,
    acceptance: float = DEFAULT_ACCEPTANCE,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit, threshold, save; returns the detector's config.

    `train` and `train_corrupted` hold the same images (clean, and each under a random
    corruption) with class indices `train_labels`; all three datasets yield preprocessed
    tensors as the model sees them.
    """
    loaded = load_model(model_dir)
    layers = tap_blocks(len(loaded.model.backbone))

    def taps(dataset: Dataset, name: str) -> tuple[list[np.ndarray], np.ndarray]:
        label = f"out-of-scope reference, {name}" if progress else None
        return dataset_taps(loaded.model, dataset, layers, progress=label)

    clean, _ = taps(train, "train")
    corrupted, _ = taps(train_corrupted, "corrupted train")
    val_taps, val_spread = taps(val, "val")
    reference = [np.concatenate(pair) for pair in zip(clean, corrupted, strict=True)]
    labels = np.concatenate([train_labels, train_labels])
    detector = fit_detector(layers, reference, labels, val_taps, val_spread, acceptance)
    config = detector.save(loaded.path)
    update_config(loaded.path, ood=config)
    return config
