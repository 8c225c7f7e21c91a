"""Outlier exposure: white cells the model must not name, shown to it while it trains.

Why: the four classes are kinds of B-lymphocyte, but a smear also holds neutrophils,
eosinophils, monocytes, mature lymphocytes, platelets and more. Folders of such cells
(`TrainConfig.outliers`, e.g. `../shared/data/wbc-types/*`) are trained on with the loss of
Hendrycks et al. 2019: their predicted distribution is pulled towards uniform over the four
classes, so that the model learns features that carry cell type and says "none of mine" for
them. After training the cell-type gate (`models.cell_gate`) gets its threshold from the
validation split.

The outlier images go through the model's own preprocessing (the white-cell finder, the scale
step that brings another lab's magnification to the training scale, the cells' lightness) and
the recipe's corrupted copies, so that the lab they come from, its stain, lamp and
magnification, is what the model is taught to ignore, not what it learns to refuse.

Each folder's files are split by a hash of their name: `outlier_share` of them are trained on,
the rest held back, so that `bloodcell evaluate --ood` can report refusals of cells of a
trained-on type that training never saw (`held_out`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.data.discover import IMAGE_EXTENSIONS
from bloodcell.data.files import iter_image_paths
from bloodcell.records import CellGateRecord

if TYPE_CHECKING:
    from bloodcell.models.registry import Classifier

log = logging.getLogger(__name__)

#: The class index outlier images carry in training batches.
OUTLIER = -1


def held_out(path: str | Path, share: float) -> bool:
    """True for a file kept out of training: decided by a hash of its name alone, so that the
    same files are held out on every machine and in every run with the same `share`."""
    digest = hashlib.sha256(Path(path).name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 >= share


def outlier_files(folders: Sequence[str | Path], share: float) -> tuple[list[Path], list[Path]]:
    """(trained, held out): the image files under `folders`, sorted, split by `held_out`."""
    files = [p for p in iter_image_paths(folders) if p.suffix.lower() in IMAGE_EXTENSIONS]
    trained = [p for p in files if not held_out(p, share)]
    return trained, [p for p in files if held_out(p, share)]


class OutlierDataset(Dataset):
    """(image tensor, `OUTLIER`) pairs for outlier files, decoded once; unreadable files are
    reported and left out."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Image.Image], Any]) -> None:
        self.transform = transform
        self.images: list[Image.Image] = []
        for path in paths:
            try:
                self.images.append(decode_image(path))
            except ImageDecodeError as exc:
                log.warning("outlier image left out: %s", exc)
        self.targets = [OUTLIER] * len(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def with_transform(self, transform: Callable[[Image.Image], Any]) -> OutlierDataset:
        """The same decoded images under another transform (the corrupted copies)."""
        view = OutlierDataset([], transform)
        view.images, view.targets = self.images, self.targets
        return view

    def image(self, i: int) -> Image.Image:
        return self.images[i]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(self.images[i]), OUTLIER


def exposure_loss(
    logits: torch.Tensor, y: torch.Tensor, criterion: nn.Module, weight: float
) -> torch.Tensor:
    """Cross-entropy on the classes' images plus `weight` x the cross-entropy from uniform on
    the outliers' (Hendrycks et al. 2019), each a mean over its own images."""
    known = y >= 0
    loss = logits.new_zeros(())
    if bool(known.any()):
        loss = loss + criterion(logits[known], y[known])
    if bool((~known).any()):
        other = logits[~known].float()
        loss = loss + weight * (torch.logsumexp(other, 1) - other.mean(1)).mean()
    return loss


@torch.inference_mode()
def loader_logits(model: Classifier, loader: DataLoader, start: str | int | None) -> np.ndarray:
    """The model's logits over a loader's batches (images, or cached outputs of its frozen
    front, entering at `start` as in training)."""
    from bloodcell.train.features import forward_from

    model.eval()
    return np.concatenate([forward_from(model, x, start).float().numpy() for x, _ in loader])


def fit_cell_gate(
    model: Classifier,
    val: DataLoader,
    start: str | int | None,
    model_dir: Path,
    folders: Sequence[str],
    share: float,
    acceptance: float,
) -> CellGateRecord:
    """Set the cell-type gate's threshold on the validation split's logits and record it,
    with the outlier folders and how many of their files were trained on, in the model's
    config; returns the gate's config."""
    from bloodcell.models.cell_gate import fit_gate
    from bloodcell.models.saved import update_config

    gate = fit_gate(loader_logits(model, val, start), acceptance).to_config()
    trained, kept = outlier_files(folders, share)
    gate["outliers"] = {
        "folders": [str(Path(f).resolve()) for f in folders],
        "share": share,
        "trained": len(trained),
        "held_out": len(kept),
    }
    update_config(model_dir, cell_gate=gate)
    return gate
