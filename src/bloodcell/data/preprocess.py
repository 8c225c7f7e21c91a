"""How an image becomes a model input, without torch: `Preprocess` and its NumPy/Pillow path.

The preprocessing is described by a small dict (`Preprocess.to_dict`) that is saved with every
model, so prediction, ONNX export and the server stain-normalise (when training did), keep only
the white cells (when training did), resize and normalise exactly as training did.

Two ways to run it, with the same numbers (tested equal within 1e-6, `tests/data`):

- `array(image)` / `prepare_array(image, guard)`: NumPy and Pillow only. What `predict` and
  the server use for every engine, so an ONNX engine answers without importing torch.
- `transform()` / `prepare(image, guard)`: the torchvision pipeline (torch imported when called),
  what training, evaluation and calibration batch through a `DataLoader`.

Both resize the PIL image with Pillow's antialiased bilinear filter (torchvision's `Resize` of a
PIL image calls Pillow), then scale to [0, 1] in float32 and normalise: ImageNet's fixed mean
and std, or each image's own (`per_image`, `data.standardize.PerImageStandardize`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from bloodcell.data.cells import CellFinder, Cells

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How pixel values are normalised: ImageNet's fixed statistics, or each image's own.
NORMALIZATIONS = ("imagenet", "per_image")
#: `PerImageStandardize`'s default: added to each channel's std before dividing.
PER_IMAGE_EPS = 1e-3


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
    #: Instead of the cells' colours, their lightness on a common scale (`lightness_reference`)
    #: on a flat background (`data.colour.cell_lightness`): hue and exposure cannot decide,
    #: shape and texture do. Needs `cells`.
    lightness: bool = False
    #: The training images' red-cell diameter in pixels (`data.scale`): images whose red cells
    #: are much larger or smaller are first resized to the training scale, and every answer
    #: records the measured scale. None: no scale step (models saved before it).
    red_cell_px: float | None = None
    #: With `lightness`, also the cells' colour variation around neutral (standardised): tint
    #: differences inside a cell, not the stain's hue (`data.colour.cell_lightness`).
    chroma: bool = False
    #: What the lightness is put on a common scale against (`data.colour.REFERENCES`): the
    #: cells' own mean and spread, or the slide's white around them.
    lightness_reference: str = "cells"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {self.normalize!r}")
        if self.lightness and self.cells is None:
            raise ValueError("lightness standardises the white cells: it needs cells")
        if self.lightness and self.grayscale:
            raise ValueError("lightness already drops the colour: do not ask for grayscale too")
        if self.chroma and not self.lightness:
            raise ValueError(
                "chroma is part of the standardised lightness view: it needs lightness"
            )
        if self.stain is not None:  # check it now, and keep a private copy (frozen in spirit)
            from bloodcell.data.stain import StainNormalizer

            object.__setattr__(self, "stain", StainNormalizer.from_dict(self.stain).to_dict())
        if self.cells is not None:
            from bloodcell.data.cells import CellFinder

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
            lightness=bool(d.get("lightness", False)),  # likewise
            red_cell_px=d.get("red_cell_px"),  # likewise
            chroma=bool(d.get("chroma", False)),  # likewise
            lightness_reference=d.get("lightness_reference", "cells"),  # likewise
        )

    # --- the steps on the PIL image, shared by both paths ------------------------------------

    def stain_steps(self) -> list[Callable]:
        """The stain normaliser as the first step of a transform (none if not configured)."""
        if self.stain is None:
            return []
        from bloodcell.data.stain import StainNormalizer

        return [StainNormalizer.from_dict(self.stain)]

    def finder(self) -> CellFinder:
        """The white-cell finder this model's preprocessing uses (the default one when the
        model sees the whole field): also what the no-white-cell guard asks."""
        from bloodcell.data.cells import CellFinder

        return CellFinder() if self.cells is None else CellFinder.from_dict(self.cells)

    def image_steps(self) -> list[Callable]:
        """PIL -> PIL steps before resizing: stain normalisation, keeping only the cells (or
        their lightness), then dropping the colour. With a scale step, all of it is one step
        (`cells_image`), so that the finder runs once on an image the scale leaves alone."""
        if self.red_cell_px is not None:
            return [CellsImage(self)]
        keep: list[Callable] = []
        if self.lightness:
            from bloodcell.data.colour import CellLightness

            keep = [CellLightness(self.finder(), self.chroma, self.lightness_reference)]
        elif self.cells is not None:
            from bloodcell.data.cells import KeepCells

            keep = [KeepCells(self.finder())]
        gray: list[Callable] = [Luminance()] if self.grayscale else []
        return [*self.stain_steps(), *keep, *gray]

    def cells_image(self, image: Image.Image, guard: bool) -> tuple[Image.Image, Cells | None]:
        """`image_steps` with the finder run once: stain-normalise, find the cells (when the
        guard or the model needs them), keep only them when the model sees only the cells,
        drop the colour when it sees grey. Returns the image and the cells (None: not run)."""
        for step in self.stain_steps():
            image = step(image)
        finder = self.finder()
        measured = self.red_cell_px is not None
        cells = finder.find(image) if (guard or self.cells is not None or measured) else None
        if measured and cells is not None:
            image, cells = self._to_training_scale(image, cells)
        if self.lightness and cells is not None:
            from bloodcell.data.colour import cell_lightness

            image = cell_lightness(image, cells, self.chroma, self.lightness_reference)
        elif self.cells is not None and cells is not None:
            from bloodcell.data.cells import keep_cells

            image = keep_cells(image, cells)
        if self.grayscale:
            image = Luminance()(image)
        return image, cells

    def _to_training_scale(self, image: Image.Image, cells: Cells) -> tuple[Image.Image, Cells]:
        """The image at the training scale, and its cells found there with the measured scale
        and their boxes in the input's pixels."""
        from dataclasses import replace

        from bloodcell.data.scale import Placement, measure_scale, to_training_scale

        assert self.red_cell_px is not None
        scale = measure_scale(image, cells, self.red_cell_px)
        image, placement = to_training_scale(image, scale, self.image_size)
        if placement == Placement():  # left as it was
            return image, replace(cells, scale=scale.factor)
        found = self.finder().find(image)
        boxes = tuple(placement.to_input(b) for b in found.boxes)
        return image, replace(found, boxes=boxes, scale=scale.factor, rescaled=True)

    def resize(self, image: Image.Image) -> Image.Image:
        """The square model size, by Pillow's antialiased bilinear filter (what torchvision's
        `Resize` does to a PIL image); the image itself when it already has that size."""
        size = (self.image_size, self.image_size)
        if image.size == size:
            return image
        return image.resize(size, Image.Resampling.BILINEAR)

    # --- NumPy: what prediction runs -----------------------------------------------------------

    def array(self, image: Image.Image) -> np.ndarray:
        """The eval transform in NumPy: PIL image -> normalised float32 array (3, S, S)."""
        for step in self.image_steps():
            image = step(image)
        return self.pixels(image)

    def prepare_array(
        self, image: Image.Image, guard: bool = True
    ) -> tuple[np.ndarray, Cells | None]:
        """One image -> (model input (3, S, S) float32, the white cells found). The finder runs
        once: its cells both decide what the model sees (`cells`) and feed the no-white-cell
        guard (`guard`); None when neither needs it."""
        image, cells = self.cells_image(image, guard)
        return self.pixels(image), cells

    def pixels(self, image: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
        """Resize, scale to [0, 1] and normalise a PIL image (after the image steps): the same
        float32 operations, in the same order, as torchvision's `ToDtype(scale=True)` and
        `Normalize` (or `PerImageStandardize`). Written into `out` (3, S, S) when given."""
        rgb = np.asarray(self.resize(image.convert("RGB") if image.mode != "RGB" else image))
        h, w, channels = rgb.shape
        x = np.empty((channels, h, w), np.float32) if out is None else out
        x[...] = rgb.transpose(2, 0, 1)
        x *= np.float32(1.0 / 255)
        if self.normalize == "per_image":
            mean = x.mean(axis=(1, 2), dtype=np.float64, keepdims=True).astype(np.float32)
            std = x.std(axis=(1, 2), ddof=1, dtype=np.float64, keepdims=True).astype(np.float32)
            x -= mean
            x /= std + np.float32(PER_IMAGE_EPS)
        else:
            x -= np.asarray(self.mean, np.float32)[:, None, None]
            x /= np.asarray(self.std, np.float32)[:, None, None]
        return x

    # --- torch: what training and evaluation batch (torch imported on first use) -------------

    def tensor_steps(self) -> Callable[[Image.Image], torch.Tensor]:
        """The rest of the eval transform, on the PIL image after `image_steps`: resize (by
        Pillow), scale to [0, 1], normalise."""
        import torch
        from torchvision.transforms import v2

        return v2.Compose(
            [
                v2.Resize((self.image_size, self.image_size), antialias=True),  # PIL in, PIL out
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                self.normalizer(),
            ]
        )

    def prepare(self, image: Image.Image, guard: bool = True) -> tuple[torch.Tensor, Cells | None]:
        """`prepare_array` through the torch transform: (model input tensor, cells found)."""
        image, cells = self.cells_image(image, guard)
        return self.tensor_steps()(image), cells

    def normalizer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The last step, on a float tensor in [0, 1]."""
        if self.normalize == "per_image":
            from bloodcell.data.standardize import PerImageStandardize

            return PerImageStandardize(PER_IMAGE_EPS)
        from torchvision.transforms import v2

        return v2.Normalize(self.mean, self.std)

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The deterministic eval transform: PIL image -> normalised float tensor (3, S, S)."""
        from torchvision.transforms import v2

        return v2.Compose([*self.image_steps(), self.tensor_steps()])


class CellsImage:
    """PIL -> PIL: `preprocess.cells_image(image, guard=False)`, every image step at once (the
    torch path of a model with a scale step); plain values only, so it pickles into
    DataLoader workers."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.preprocess.cells_image(image, guard=False)[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellsImage) and other.preprocess == self.preprocess

    def __hash__(self) -> int:
        return hash((CellsImage, self.preprocess.image_size, self.preprocess.red_cell_px))

    def __repr__(self) -> str:
        return f"CellsImage({self.preprocess!r})"


class Luminance:
    """PIL -> PIL: the luminance (Pillow's "L") copied to the three channels; the pixels of
    torchvision's `Grayscale(num_output_channels=3)` of a PIL image, without torch."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("L").convert("RGB")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Luminance)

    def __hash__(self) -> int:
        return hash(Luminance)

    def __repr__(self) -> str:
        return "Luminance()"
