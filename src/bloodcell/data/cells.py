"""Find the white cells (leukocytes) of a blood-smear image, and edit images around them.

Why: in the B-ALL dataset every class comes from its own slides, so background, red cells and
stain differ by class and a model can learn the slide instead of the white cells. The finder
lets the pipeline (a) keep only the white cells before the model sees an image (`KeepCells`,
in training and inference alike), (b) refuse an image in which no white cell is found
(`Cells.count == 0`), and (c) audit what a model looks at: erase the cells (`erase_cells`), keep
them alone (`keep_cells`), or paste them onto another image's background (`paste_cells`).

Method (stain colour, no learning; the image steps are Pillow and OpenCV calls, chosen because
they import in a fraction of the time SciPy and scikit-image take, which a one-image `predict`
pays in full; tests check every step against the scikit-image / SciPy definition it follows):

1. Work at a reduced size: the image is box-averaged by an integer factor (`Image.reduce`) so
   that its longer side is at most `work_size` (the dataset's 224 px -> 75 px). That is cheap,
   and it averages JPEG noise and thin high-contrast strokes (scale-bar text) away.
2. Colour deconvolution (Ruifrok & Johnston 2001, as `skimage.color.separate_stains`) into three
   optical-density directions: the leukocyte purple (Benign/Early/Pre nuclei and cytoplasm and
   the lilac Pro cells all absorb red and green light but hardly blue), the grey-blue of this
   dataset's red cells, and the orange-pink of eosin-stained red cells (classic Romanowsky
   smears). Only the leukocyte channel is computed. Red cells of either colour, the background
   and any grey (black text, a flat image) load on the other directions, so they score zero
   (`separate_stains` clips negative amounts at zero). The directions are medians measured on
   the dataset: white-cell pixels of the authors' segmentation, red-cell pixels far from it.
3. The score is that channel minus its `background_percentile` (25th) percentile over the
   image: at least a quarter of any smear field is background and red cells, so the threshold
   is relative to each image's own background and tint.
4. Hysteresis with a minimum core (as `skimage.filters.apply_hysteresis_threshold`, fused with
   the size test into one labelling, `cv2.connectedComponentsWithStats`): the region above
   `low`, after a binary opening that cuts off thin red-cell rims and bridges, is one cell (or
   a clump of touching cells) when at least `min_area` of it is above `high` and it is at most
   `max_area` in all. Areas are fractions of the image area, so any resolution works:
   platelets, debris and text have too small a core; a tinted field is too large. A dilation
   of `margin` input pixels then takes in the cytoplasm edge, and the mask is scaled back to
   the input size.

On the dataset (2,804 images) every image has at least one cell found, and after the found
cells are erased with the background colour none is found again. A flat image (blank, black,
grey, any single colour) scores zero everywhere and has no cells.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
from PIL import Image

#: Optical-density directions (R, G, B absorbance, relative to the background) of the three
#: stains the image is separated into. Leukocyte and grey-blue red cell: medians measured on
#: the dataset's four classes (they agree to about 0.03 between classes); pink red cell: the
#: orange-pink of eosin, absorbing green and blue but little red.
LEUKOCYTE_OD = (0.55, 0.83, -0.01)
RED_CELL_OD = (0.73, 0.62, 0.26)
PINK_RED_CELL_OD = (0.12, 0.72, 0.68)

#: Mid grey: what `keep_cells` puts outside the cells. Equal channels are neutral for the
#: stain score (it scores zero), and 128 is the middle of the range, so per-image or ImageNet
#: normalisation maps it near zero.
NEUTRAL: tuple[int, int, int] = (128, 128, 128)


def _leukocyte_column() -> np.ndarray:
    """The (3, 1) column of the inverse stain matrix that gives the leukocyte concentration.

    `separate_stains` divides the log by log(1e-6); multiplying the column by -log(1e-6)
    returns the concentration in natural-log optical-density units, which the thresholds use.
    """
    stains = np.array(
        [np.asarray(v) / np.linalg.norm(v) for v in (LEUKOCYTE_OD, RED_CELL_OD, PINK_RED_CELL_OD)]
    )
    return (np.linalg.inv(stains)[:, :1] * -np.log(1e-6)).astype(np.float32)


_COLUMN = _leukocyte_column()


def _optical_density_table() -> np.ndarray:
    """Optical density of each 8-bit level as `skimage.color.separate_stains` computes it
    (tested equal): a table instead of the call, so no scikit-image or SciPy is imported
    (a third of a second of every one-image `predict`), and less of the finder's time."""
    levels = np.maximum(np.arange(256, dtype=np.float32) * np.float32(1 / 255), 1e-6)
    return np.log(levels) / np.log(1e-6)


_OD = _optical_density_table()


@functools.cache
def _disk(radius: int) -> np.ndarray:
    """`skimage.morphology.disk(radius)` as a uint8 kernel for OpenCV (tested equal)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cells:
    """White cells found in one image: a pixel mask and one box per connected cell (or clump)."""

    mask: np.ndarray  # (H, W) bool, True on white-cell pixels (with the margin)
    boxes: tuple[Box, ...]  # (top, left, bottom, right) per cell, bottom/right exclusive
    #: How many times larger than in the training images the image shows its red cells
    #: (`data.scale`), when the model's preprocessing measured it; None: not measured or
    #: unknown. When the image was rescaled to the training scale first, `mask` is in that
    #: rescaled frame and `boxes` in the input's pixels.
    scale: float | None = None
    rescaled: bool = False

    @property
    def count(self) -> int:
        """Number of cells (touching cells count once); 0 means: refuse the image."""
        return len(self.boxes)

    @property
    def fraction(self) -> float:
        """Share of the image's pixels in the mask (0 for an empty image)."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def _rgb_image(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL RGB image from a PIL image of any mode or a gray/RGB/RGBA array."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(_rgb_array(image), "RGB")


def _rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image of any mode or a gray/RGB/RGBA array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, not {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if np.issubdtype(arr.dtype, np.floating):  # scikit-image's convention: floats in [0, 1]
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class CellFinder:
    """Stain-colour white-cell finder; see the module docstring for the method.

    Thresholds are in natural-log optical density of the leukocyte stain above the image's
    background; areas are fractions of the image area; `margin` is in pixels of the input.
    """

    #: Longer side of the working image (reduced by an integer factor); 0 = full resolution.
    #: 75 = a third of the dataset's 224 px: cells are still 7-15 working pixels across.
    work_size: int = 75
    #: Percentile of the leukocyte stain taken as the image's background level.
    background_percentile: float = 25.0
    #: Hysteresis: a cell's extent is above `low`; its core, above `high`.
    low: float = 0.12
    high: float = 0.25
    #: Opening radius of the extent, in working pixels: cuts off rims thinner than ~2r+1.
    opening: int = 1
    #: Fill holes inside cells (pale nuclear spots); off: under 0.1% of the mask on the dataset.
    fill_holes: bool = False
    #: A cell's core is at least `min_area`, its extent at most `max_area` (image fractions).
    min_area: float = 0.0015
    max_area: float = 0.3
    #: Dilation of the final mask, in input pixels (at least one working pixel): takes in the
    #: cytoplasm edge.
    margin: int = 2
    #: Scale each colour channel so that the image's background (its `WHITE_PERCENTILE`
    #: pixel) is the same white before scoring: a dimmer or brighter lamp, or another camera
    #: exposure, then finds the same cells (the stain's optical density is measured relative
    #: to the light that reaches the camera). Off in models saved before it.
    white_balance: bool = False

    def __post_init__(self) -> None:
        if self.work_size < 0 or self.opening < 0 or self.margin < 0:
            raise ValueError("work_size, opening and margin must be >= 0")
        if not 0 <= self.background_percentile <= 100:
            raise ValueError(
                f"background_percentile must be in [0, 100], not {self.background_percentile}"
            )
        if not 0 < self.low <= self.high:
            raise ValueError(f"need 0 < low <= high, not low={self.low}, high={self.high}")
        if not 0 <= self.min_area < self.max_area <= 1:
            raise ValueError(
                f"need 0 <= min_area < max_area <= 1, not {self.min_area}, {self.max_area}"
            )

    def to_dict(self) -> dict:
        """Plain numbers, saved with a model so inference finds cells exactly as training did."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CellFinder:
        """Inverse of `to_dict`; missing keys take the defaults, unknown keys are refused."""
        names = {f.name: f.type for f in fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"unknown CellFinder parameters: {sorted(unknown)}")
        kinds = {
            "work_size": int,
            "opening": int,
            "margin": int,
            "fill_holes": bool,
            "white_balance": bool,
        }
        return cls(**{k: kinds.get(k, float)(v) for k, v in d.items()})

    def _factor(self, width: int, height: int) -> int:
        """Integer reduction factor that brings the longer side to at most `work_size`."""
        longest = max(width, height)
        if self.work_size <= 0 or longest <= self.work_size:
            return 1
        return math.ceil(longest / self.work_size)

    def score(self, small: np.ndarray) -> np.ndarray:
        """Leukocyte stain above the image's background, per pixel of an (h, w, 3) uint8 array.

        Background = the `background_percentile` pixel: at least that share of a smear field
        is background and red cells (white cells cover up to about half of a crowded field),
        so a slide's overall tint cancels out.
        """
        conc = np.maximum(_OD[small] @ _COLUMN, 0)[..., 0]  # separate_stains' clip at zero
        flat = conc.ravel()
        k = min(int(self.background_percentile / 100 * flat.size), flat.size - 1)
        return conc - np.partition(flat, k)[k]  # the percentile; 10x cheaper than np.percentile

    def find(self, image: Image.Image | np.ndarray) -> Cells:
        """Find the white cells of an RGB uint8 (H, W, 3) array or a PIL image, any size."""
        if isinstance(image, np.ndarray) and (image.ndim < 2 or 0 in image.shape[:2]):
            return Cells(np.zeros(image.shape[:2] if image.ndim >= 2 else (0, 0), bool), ())
        img = _rgb_image(image)
        w, h = img.size
        if w == 0 or h == 0:
            return Cells(np.zeros((h, w), bool), ())
        factor = self._factor(w, h)
        small = img.reduce(factor) if factor > 1 else img  # box average: cheap, and denoises
        pixels = np.asarray(small)
        score = self.score(balanced(pixels) if self.white_balance else pixels)
        extent = (score > self.low).view(np.uint8)
        if self.opening:  # cut thin red-cell rims and bridges off the cells
            extent = _open(extent, self.opening)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(extent, connectivity=4)
        if n <= 1:
            return Cells(np.zeros((h, w), bool), ())
        # Hysteresis (as skimage.filters.apply_hysteresis_threshold) with a minimum core, in one
        # labelling: keep the regions above `low` that hold at least `min_area` above `high`
        # and are at most `max_area` in all.
        pixel = factor * factor / (h * w)
        area = stats[1:, cv2.CC_STAT_AREA] * pixel
        core = np.bincount(labels[score > self.high], minlength=n)[1:]
        keep = (core > 0) & (core * pixel >= self.min_area) & (area <= self.max_area)
        if not keep.any():
            return Cells(np.zeros((h, w), bool), ())
        mask = np.concatenate([[False], keep])[labels]
        if self.fill_holes:
            from scipy.ndimage import binary_fill_holes  # off by default: not on the fast path

            mask = binary_fill_holes(mask)
        grow = math.ceil(self.margin / factor)
        if grow:  # square dilation; pixels outside the image count as background
            mask = _dilate(mask.view(np.uint8), grow).view(bool)
        boxes = _boxes(labels, stats, keep, grow, factor, mask.shape, (h, w))
        if factor > 1:
            mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:h, :w]
        return Cells(mask, boxes)


#: The percentile of each channel taken as the slide's white, and the level it is moved to.
WHITE_PERCENTILE = 90.0
WHITE_LEVEL = 235.0


def balanced(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 with each channel scaled so that its `WHITE_PERCENTILE` pixel (the
    slide's background: cells cover less than that share of a field) is `WHITE_LEVEL`."""
    flat = rgb.reshape(-1, 3)
    k = min(int(WHITE_PERCENTILE / 100 * len(flat)), len(flat) - 1)
    white = np.partition(flat, k, axis=0)[k].astype(np.float32)
    gain = WHITE_LEVEL / np.maximum(white, 1.0)
    return np.clip(rgb * gain, 0, 255).astype(np.uint8)


def _open(binary: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a disk with pixels outside the image as background (what
    `scipy.ndimage.binary_opening` does; OpenCV's default border would keep edge pixels)."""
    return cv2.morphologyEx(
        binary, cv2.MORPH_OPEN, _disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )


def _dilate(binary: np.ndarray, grow: int) -> np.ndarray:
    """Dilation by a (2 grow + 1)-pixel square, outside the image as background."""
    square = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    return cv2.dilate(binary, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def _boxes(
    labels: np.ndarray,
    stats: np.ndarray,
    keep: np.ndarray,
    grow: int,
    factor: int,
    small: tuple[int, int],
    full: tuple[int, int],
) -> tuple[Box, ...]:
    """Input-pixel boxes of the kept regions, grown by `grow` working pixels and clipped, in
    the order of each region's first pixel in reading order (as `scipy.ndimage.label`
    numbers them), so the same image always lists its cells the same way."""
    order = [i for i in range(1, len(stats)) if keep[i - 1]]
    if len(order) > 1:

        def first_pixel(i: int) -> tuple[int, int]:  # its top row, then where in that row
            top = int(stats[i, cv2.CC_STAT_TOP])
            return top, int(np.argmax(labels[top] == i))

        order.sort(key=first_pixel)
    sh, sw = small
    h, w = full
    boxes = []
    for i in order:
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        boxes.append(
            (
                max(y - grow, 0) * factor,
                max(x - grow, 0) * factor,
                min(min(y + bh + grow, sh) * factor, h),
                min(min(x + bw + grow, sw) * factor, w),
            )
        )
    return tuple(boxes)


def find_cells(image: Image.Image | np.ndarray, finder: CellFinder | None = None) -> Cells:
    """`finder.find(image)` with the default finder when none is given."""
    return (finder or CellFinder()).find(image)


def _check(image_size: tuple[int, int], cells: Cells) -> None:
    w, h = image_size
    if cells.mask.shape != (h, w):
        raise ValueError(f"cell mask is {cells.mask.shape[::-1]} (w, h) but the image is {w}x{h}")


def background_colour(image: Image.Image | np.ndarray, cells: Cells) -> tuple[int, int, int]:
    """Median colour of the pixels outside the cells: what the audit paints cells with, so that
    an erased image looks like the slide's own cell-free field."""
    rgb = _rgb_array(image)
    if cells.mask.shape != rgb.shape[:2]:
        raise ValueError(f"cell mask {cells.mask.shape} does not fit image {rgb.shape[:2]}")
    outside = rgb[~cells.mask]
    if outside.size == 0:
        outside = rgb.reshape(-1, 3)
    if outside.size == 0:
        return NEUTRAL
    med = np.median(outside, axis=0)
    return (int(med[0]), int(med[1]), int(med[2]))


def _mask_image(cells: Cells) -> Image.Image:
    """The mask as a PIL "1" image, for `Image.composite` (C speed, exact pixels)."""
    return Image.fromarray(np.ascontiguousarray(cells.mask))


def _flat(size: tuple[int, int], colour: Sequence[int]) -> Image.Image:
    return Image.new("RGB", size, tuple(int(v) for v in colour[:3]))


def keep_cells(image: Image.Image, cells: Cells, fill: Sequence[int] = NEUTRAL) -> Image.Image:
    """The image with everything outside the cells set to `fill` (RGB): the model then sees
    only white cells, never the slide's background, red cells or stain tint."""
    _check(image.size, cells)
    return Image.composite(image.convert("RGB"), _flat(image.size, fill), _mask_image(cells))


def erase_cells(image: Image.Image, cells: Cells, fill: Sequence[int] | None = None) -> Image.Image:
    """The image with the cell pixels painted with its background colour (or `fill`): what a
    model predicts from what is left shows how much it relies on the slide."""
    _check(image.size, cells)
    colour = background_colour(image, cells) if fill is None else fill
    return Image.composite(_flat(image.size, colour), image.convert("RGB"), _mask_image(cells))


def paste_cells(cells_from: Image.Image, cells: Cells, onto: Image.Image) -> Image.Image:
    """The cell pixels of `cells_from` over `onto` (resized to the same size): the same cells on
    another slide's background, for the background-swap audit."""
    _check(cells_from.size, cells)
    if 0 in cells_from.size:
        return cells_from.convert("RGB")
    base = onto.convert("RGB")
    if 0 in base.size:  # nothing to resize: an empty background is black
        base = Image.new("RGB", cells_from.size)
    elif base.size != cells_from.size:
        base = base.resize(cells_from.size, Image.Resampling.BILINEAR)
    return Image.composite(cells_from.convert("RGB"), base, _mask_image(cells))


class KeepCells:
    """Transform step PIL -> PIL: `keep_cells(img, finder.find(img), fill)`.

    Put it before resizing in the model's preprocessing (the finder works at any size).
    Holds only plain values, so it pickles into DataLoader workers.
    """

    def __init__(self, finder: CellFinder | None = None, fill: Sequence[int] = NEUTRAL) -> None:
        self.finder = finder or CellFinder()
        self.fill = tuple(int(v) for v in fill)

    def __call__(self, img: Image.Image) -> Image.Image:
        return keep_cells(img, self.finder.find(img), self.fill)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KeepCells) and other.finder == self.finder and other.fill == self.fill
        )

    def __hash__(self) -> int:
        return hash((self.finder, self.fill))

    def __repr__(self) -> str:
        return f"KeepCells(finder={self.finder!r}, fill={self.fill})"
