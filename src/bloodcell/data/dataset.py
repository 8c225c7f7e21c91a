"""Torch datasets over a split manifest, and the image transforms shared by training and inference.

The preprocessing is described by a small dict (`Preprocess.to_dict`) that is saved with every
model, so prediction, ONNX export and the server stain-normalise (when training did), keep only
the white cells (when training did), resize and normalise exactly as training did.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from bloodcell.data.cells import CellFinder, Cells, KeepCells, keep_cells
from bloodcell.data.decode import decode_image
from bloodcell.data.manifest import ManifestRow
from bloodcell.data.stain import StainNormalizer
from bloodcell.labels import LABELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerImageStandardize(torch.nn.Module):
    """Give each colour channel of each image zero mean and unit variance.

    A smear photographed brighter, darker, with more or less contrast or another white balance
    changes each channel by roughly `a * x + b`; standardising per image undoes exactly that, so
    the model never sees the difference (a Reinhard-style colour normalisation in RGB).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True)
        return (x - mean) / (std + self.eps)


#: How pixel values are normalised: ImageNet's fixed statistics, or each image's own.
NORMALIZATIONS = ("imagenet", "per_image")


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes a model input: optionally stain-normalise, optionally keep only
    the white cells (everything else neutral grey), resize to a square, scale to [0,1],
    normalise."""

    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    normalize: str = "imagenet"
    #: A fitted `StainNormalizer.to_dict()`, applied first; None = no stain normalisation.
    #: Left out of the hash (a dict cannot be hashed); equality still compares it.
    stain: dict | None = field(default=None, hash=False)
    #: A `CellFinder.to_dict()`: the model sees only what it marks as white cells, the rest set
    #: to neutral grey, so the slide around them cannot decide the answer; None = whole field.
    cells: dict | None = field(default=None, hash=False)
    #: After that, drop the colour (luminance copied to the three channels): the model then
    #: reads shape and texture, not the stain's hue, which differs by slide batch.
    grayscale: bool = False

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {self.normalize!r}")
        if self.stain is not None:  # check it now, and keep a private copy (frozen in spirit)
            object.__setattr__(self, "stain", StainNormalizer.from_dict(self.stain).to_dict())
        if self.cells is not None:
            object.__setattr__(self, "cells", CellFinder.from_dict(self.cells).to_dict())

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            image_size=int(d["image_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            normalize=d.get("normalize", "imagenet"),  # models saved before the option existed
            stain=d.get("stain"),  # likewise
            cells=d.get("cells"),  # likewise
            grayscale=bool(d.get("grayscale", False)),  # likewise
        )

    def stain_steps(self) -> list[Callable]:
        """The stain normaliser as the first step of a transform (none if not configured)."""
        return [] if self.stain is None else [StainNormalizer.from_dict(self.stain)]

    def finder(self) -> CellFinder:
        """The white-cell finder this model's preprocessing uses (the default one when the
        model sees the whole field): also what the no-white-cell guard asks."""
        return CellFinder() if self.cells is None else CellFinder.from_dict(self.cells)

    def image_steps(self) -> list[Callable]:
        """PIL -> PIL steps before resizing: stain normalisation, keeping only the cells, then
        dropping the colour."""
        keep = [] if self.cells is None else [KeepCells(self.finder())]
        gray = [v2.Grayscale(num_output_channels=3)] if self.grayscale else []
        return [*self.stain_steps(), *keep, *gray]

    def tensor_steps(self) -> Callable[[Image.Image], torch.Tensor]:
        """The rest of the eval transform: resize, scale to [0, 1], normalise."""
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize((self.image_size, self.image_size), antialias=True),
                v2.ToDtype(torch.float32, scale=True),
                self.normalizer(),
            ]
        )

    def prepare(self, image: Image.Image, guard: bool = True) -> tuple[torch.Tensor, Cells | None]:
        """One image -> (model input, the white cells found). The finder runs once: its cells
        both decide what the model sees (`cells`) and feed the no-white-cell guard (`guard`);
        None when neither needs it."""
        for step in self.stain_steps():
            image = step(image)
        cells = self.finder().find(image) if (guard or self.cells is not None) else None
        if self.cells is not None and cells is not None:
            image = keep_cells(image, cells)
        if self.grayscale:
            image = image.convert("L").convert("RGB")
        return self.tensor_steps()(image), cells

    def normalizer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The last step, on a float tensor in [0, 1]."""
        if self.normalize == "per_image":
            return PerImageStandardize()
        return v2.Normalize(self.mean, self.std)

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The deterministic eval transform: PIL image -> normalised float tensor (3, S, S)."""
        return v2.Compose([*self.image_steps(), self.tensor_steps()])


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
