"""How magnified an image is, measured on its red cells, and the image brought to the training
scale.

Why: red cells are about 7.5 µm across on every slide, so their size in pixels tells an image's
magnification. The model learnt white cells at one scale (in this dataset's 224 px fields a red
cell is about 22 px across); another lab's 100x oil crop shows them three or four times larger,
and a model shown that compares a lymphocyte's size with a blast's at the wrong scale. So every
answer records the scale, an image at another scale is resized to the training scale first, and
one whose scale cannot be measured is refused rather than guessed.

Method (OpenCV, no learning):

1. Foreground: pixels that absorb green light (haemoglobin and stains both do) clearly more
   than the slide's background, by Otsu's threshold on the green optical density.
2. Holes filled (the pale centre of a red cell), the white cells `data.cells` finds removed.
3. The distance transform: in each connected blob, the largest distance to the background is
   the radius of the largest disc inside it, one red cell's radius even when cells touch.
4. The image's red-cell diameter is the median of twice those radii over the blobs that do not
   touch the image's edge (all blobs when too few do not), once at least `min_cells` blobs
   are found; otherwise there is no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from bloodcell.data.cells import CellFinder, Cells

#: The red-cell diameter of the training images in pixels as `measure_scale` measures it (the
#: median over the dataset's 224 px fields, BENCHMARKS.md), what `to_training_scale` brings
#: other images to.
TRAINING_RED_CELL_PX = 16.0
#: Images whose scale is within this factor of the training scale are left as they are: the
#: estimate varies by up to about that much between the dataset's own fields (0.7% of them
#: fall outside 2.5x, 3% outside 2x; a field shrunk by mistake loses its white cells), and
#: another lab's 100x crop is 4-5x.
TOLERANCE = 3.0
#: The estimate runs on the image reduced by an integer factor to at most this shorter side.
WORK_SIZE = 120
#: Fewest red-cell blobs for an estimate.
MIN_CELLS = 2
#: Smallest diameter (pixels) a blob must have to count as a red cell rather than debris.
MIN_DIAMETER = 5.0
#: A single cell's blob: its box's short side at least this share of its long side, and the
#: blob at least `FILL` of its box.
ROUNDNESS = 0.7
FILL = 0.4
#: Least green optical density of the red cells above the slide's background.
MIN_CONTRAST = 0.04


@dataclass(frozen=True)
class Scale:
    """An image's measured magnification relative to the training images."""

    #: Median red-cell diameter in pixels; None when it could not be measured.
    red_cell_px: float | None
    #: How many red cells the estimate rests on.
    red_cells: int
    #: The training images' red-cell diameter.
    reference_px: float = TRAINING_RED_CELL_PX

    @property
    def factor(self) -> float | None:
        """How many times larger the image shows cells than the training images (None: unknown)."""
        return None if self.red_cell_px is None else self.red_cell_px / self.reference_px

    @property
    def matches(self) -> bool:
        """True when the image is at the training scale, within `TOLERANCE`."""
        f = self.factor
        return f is not None and 1 / TOLERANCE <= f <= TOLERANCE


def _green_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density of the green channel, float32 (higher = absorbs more)."""
    return -np.log((rgb[..., 1].astype(np.float32) + 1.0) / 256.0)


def _flattened(density: np.ndarray) -> np.ndarray:
    """The density minus its slowly varying background (uneven lighting, vignetting): the
    background is the density's minimum over a window larger than any cell, smoothed."""
    k = max(3, min(density.shape) // 4) | 1
    background = cv2.blur(cv2.erode(density, np.ones((k, k), np.uint8)), (k, k))
    return np.maximum(density - background, 0)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Blobs with their holes filled (outer contours drawn filled)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def measure_scale(
    image: Image.Image, cells: Cells | None = None, reference_px: float = TRAINING_RED_CELL_PX
) -> Scale:
    """The red-cell diameter of `image`; `cells` are its white cells (found here when not
    given), which are left out."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if min(image.size) < 8:
        return Scale(None, 0, reference_px)
    if cells is None or cells.mask.shape != (image.height, image.width):
        cells = CellFinder().find(image)
    reduce = max(1, min(image.size) // WORK_SIZE)
    small = image.reduce(reduce) if reduce > 1 else image
    found = cells.mask[::reduce, ::reduce][: small.height, : small.width]
    rgb = np.asarray(small)
    white = cv2.dilate(found.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    density = _flattened(_green_density(rgb))
    rest = density[~white]
    if rest.size < 64:
        return Scale(None, 0, reference_px)
    top = float(np.percentile(rest, 99))
    if top < MIN_CONTRAST:  # flat: nothing to measure
        return Scale(None, 0, reference_px)
    # Otsu over what is not a white cell: red cells against the slide's background.
    levels = np.clip(density * (200.0 / top), 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(levels[~white].reshape(-1, 1), 0, 1, cv2.THRESH_OTSU)
    fg = ((levels > level) & ~white).view(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg = _fill_holes(fg)
    fg[white] = 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    h, w = fg.shape
    x, y, bw, bh, area = (stats[1:, i].astype(np.float64) for i in range(5))
    inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    # One red cell: about as wide as high, filling a good part of its box (a disc fills 79%,
    # a ring with a gap still about half); clumps of touching cells are longer or emptier.
    side = (bw + bh) / 2
    round_ = (np.minimum(bw, bh) / np.maximum(bw, bh) >= ROUNDNESS) & (area >= FILL * bw * bh)
    chosen = inside & round_ & (side * reduce >= MIN_DIAMETER)
    if chosen.sum() < MIN_CELLS:
        return Scale(None, int(chosen.sum()), reference_px)
    diameter = float(np.median(side[chosen])) * reduce
    return Scale(round(diameter, 2), int(chosen.sum()), reference_px)


@dataclass(frozen=True)
class Placement:
    """Where the input image lies in a rescaled one: input pixel = (rescaled pixel - offset)
    x `factor` (the identity when nothing was rescaled)."""

    factor: float = 1.0
    left: int = 0
    top: int = 0

    def to_input(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A (top, left, bottom, right) box of the rescaled image in input pixels."""
        t, le, b, r = box
        f = self.factor
        return (
            max(0, round((t - self.top) * f)),
            max(0, round((le - self.left) * f)),
            max(0, round((b - self.top) * f)),
            max(0, round((r - self.left) * f)),
        )


def to_training_scale(
    image: Image.Image, scale: Scale, size: int = 224
) -> tuple[Image.Image, Placement]:
    """`image` resized so that its red cells are as large as in the training images, then
    padded with its border colour or centre-cropped to `size` x `size` (so that the model's own
    resize to `size` does not change the scale again), and where the input lies in it. The
    image itself when its scale already matches or is unknown."""
    factor = scale.factor
    if factor is None or scale.matches:
        return image, Placement()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    w, h = max(1, round(rgb.width / factor)), max(1, round(rgb.height / factor))
    resized = rgb.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
    canvas = Image.new("RGB", (size, size), _border_colour(resized))
    left, top = (size - w) // 2, (size - h) // 2  # negative: the image is cropped
    canvas.paste(resized, (left, top))
    return canvas, Placement(rgb.width / w, left, top)


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    """Median colour of the outermost pixels: the slide's background, as a padding colour."""
    arr = np.asarray(image)
    edge = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    med = np.median(edge, axis=0)
    return (int(med[0]), int(med[1]), int(med[2]))
