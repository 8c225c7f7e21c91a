"""Torch datasets over a split manifest, and the training augmentation.

How an image becomes a model input (`Preprocess`, saved with every model) is `data.preprocess`,
which imports no torch.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from bloodcell.data.decode import decode_image
from bloodcell.data.manifest import ManifestRow
from bloodcell.data.preprocess import Preprocess
from bloodcell.labels import LABELS

__all__ = ["Augment", "ManifestDataset", "RandomRot90"]


class RandomRot90:
    """Rotate by a random multiple of 90 degrees: smears have no orientation."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return torch.rot90(img, random.randint(0, 3), dims=(-2, -1))


@dataclass(frozen=True)
class Augment:
    """Training augmentation that fits smears: flips, 90-degree turns, mild colour and scale."""

    flips: bool = True
    rot90: bool = True
    color: float = 0.1
    hue: float = 0.02
    scale: tuple[float, float] = (0.85, 1.0)
    extra: Sequence[Callable] = field(default_factory=tuple)

    def transform(self, pre: Preprocess) -> Callable[[Image.Image], torch.Tensor]:
        steps: list[Callable] = [
            *pre.image_steps(),  # before the colour jitter, which must still vary the colours
            v2.ToImage(),
            v2.RandomResizedCrop(
                (pre.image_size, pre.image_size), scale=self.scale, ratio=(0.9, 1.1), antialias=True
            ),
        ]
        if self.flips:
            steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        if self.rot90:
            steps.append(RandomRot90())
        if self.color:
            steps.append(v2.ColorJitter(self.color, self.color, self.color, self.hue))
        steps += list(self.extra)
        steps += [v2.ToDtype(torch.float32, scale=True), pre.normalizer()]
        return v2.Compose(steps)


class ManifestDataset(Dataset):
    """(image tensor, class index) pairs for the rows of one split.

    `cache=True` keeps decoded images in memory: the whole dataset is ~400 MB at 224 px,
    and decoding JPEGs every epoch costs more than the forward pass of a frozen backbone.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        data_root: str | Path,
        transform: Callable[[Image.Image], torch.Tensor],
        cache: bool = False,
    ) -> None:
        self.rows = list(rows)
        self.data_root = Path(data_root)
        self.transform = transform
        self.targets = [LABELS.index(r.label) for r in self.rows]
        self._cache: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def with_transform(self, transform: Callable[[Image.Image], torch.Tensor]) -> ManifestDataset:
        """The same images under another transform, sharing the decoded-image cache."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def image(self, i: int) -> Image.Image:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = decode_image(self.data_root / self.rows[i].path)
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image(i)), self.targets[i]
