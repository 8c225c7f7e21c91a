"""The out-of-scope detector of a run that cached nothing during training, fitted with one pass
over the images after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.data.dataset import ManifestDataset
from bloodcell.data.manifest import select
from bloodcell.data.preprocess import Preprocess
from bloodcell.labels import LABELS
from bloodcell.train.config import TrainConfig
from bloodcell.train.datasets import corrupt_seed, corrupted_dataset


def fit_scope(
    model_dir: Path,
    config: TrainConfig,
    rows: list,
    data_root: Path,
    pre: Preprocess,
    progress: bool,
) -> dict[str, Any]:
    """Fit the final model's out-of-scope detector with one pass over the images (when training
    cached nothing): the clean train split and the recipe's corrupted copies of it (at least
    one) are the reference, the val split sets the threshold. The same images as the cached
    path (`models.scope_fit.ScopeRecorder`), so both give the same detector."""
    from bloodcell.models.scope_detector import DEFAULT_ACCEPTANCE
    from bloodcell.models.scope_fit import fit_model_scope

    train_rows, val_rows = select(rows, "train"), select(rows, "val")
    train = ManifestDataset(train_rows, data_root, pre.transform(), cache=True)
    corrupted = [
        corrupted_dataset(train, config, seed=corrupt_seed(config, i), pre=pre)
        for i in range(max(config.corrupt_copies, 1))
    ]
    val = ManifestDataset(val_rows, data_root, pre.transform())
    labels = np.array([LABELS.index(r.label) for r in train_rows])
    acceptance = DEFAULT_ACCEPTANCE if config.ood_acceptance is None else config.ood_acceptance
    return fit_model_scope(model_dir, train, corrupted, val, labels, acceptance, progress=progress)
