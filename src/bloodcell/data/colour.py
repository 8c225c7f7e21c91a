"""The white cells' colour: what the model is allowed to see of it, and the edits that test it.

Why: in the B-ALL dataset the cells' stain differs by slide batch, and so by class (Pro-B cells
pinkish, Early and Pre-B purple). A model that reads the hue recognises the slide batch again,
one level down, and a lab's stain, lamp and camera change its hue from week to week. A
haematologist tells the cells apart by nucleus, chromatin and cytoplasm, which the lightness
alone shows.

- `cell_lightness` is the model's view in the `shape` recipes: the cells' lightness (CIE L*,
  OpenCV's 8-bit Lab), standardised over the cell mask to a fixed mean and spread, on a flat
  background. Hue, saturation, stain strength, exposure and contrast (any `a * L + b` change
  inside the cells) cannot reach the model; shape and texture do. With `chroma`, the cells'
  colour variation is kept too, but not their colour: a* and b* each standardised over the
  cells around neutral, so nucleus and cytoplasm still differ in tint while the stain's hue,
  strength and white balance (any per-channel `a * x + b` change) are gone.
- `recolour_cells`, `grey_cells` and `turn_hue` are the stain audit's edits
  (`evaluation.stain_audit`): another class's cell colour with the lightness kept, no colour at
  all, and a hue turn of the whole image.

Colour maths by OpenCV (`cv2.cvtColor`, 8-bit Lab and HSV): no SciPy or scikit-image, so a
one-image `predict` stays fast to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from bloodcell.data.cells import CellFinder, Cells

#: The cells' lightness after standardisation, in 8-bit levels: darker than the background, as
#: stained cells are on a bright slide, with room for texture on both sides.
CELL_MEAN = 100.0
CELL_SPREAD = 40.0
#: The flat background around the cells (a bright, neutral slide).
BACKGROUND = 200
#: Below this spread (8-bit levels) the cells are treated as flat: only their mean is moved.
MIN_SPREAD = 1.0
#: With `reference="slide"`: the level the slide's background (its `WHITE_PERCENTILE`
#: lightness outside the cells) is moved to, and the offset that makes 8-bit L* proportional
#: to the cube root of luminance (L* + 16), so that a dimmer or brighter lamp cancels out.
SLIDE_WHITE = 235.0
WHITE_PERCENTILE = 90.0
L_OFFSET = 16 * 2.55
#: How the cells' lightness is put on a common scale: over the cells themselves (a fixed mean
#: and spread), or against the slide around them (its white, as the eye and the finder judge
#: stain), which keeps how dark each cell is stained.
REFERENCES = ("cells", "slide")
#: The spread of the cells' a* and of their b* (8-bit levels) in the `chroma` view.
CHROMA_SPREAD = 6.0


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def lightness(image: Image.Image) -> np.ndarray:
    """CIE L* of an RGB image as OpenCV's 8-bit Lab gives it (0-255), float32 (H, W)."""
    return cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)


def cell_lightness(
    image: Image.Image, cells: Cells, chroma: bool = False, reference: str = "cells"
) -> Image.Image:
    """The model's view of `image`: the cells' lightness standardised over `cells.mask` to
    `CELL_MEAN` +- `CELL_SPREAD` (or, with `reference="slide"`, scaled so that the slide's
    white is `SLIDE_WHITE`), everything else `BACKGROUND`, as a grey RGB image; with `chroma`,
    their a* and b* around neutral at `CHROMA_SPREAD` as well (a colour image)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, not {reference!r}")
    mask = cells.mask
    if mask.shape != (image.height, image.width):
        raise ValueError(f"cell mask {mask.shape} does not fit image {image.height}x{image.width}")
    lab = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2LAB)
    # Every change below is a function of one 8-bit level, so it is worked out once per level
    # (a 256-entry table per channel, the same float operations as on each pixel) and looked up.
    levels = np.arange(256, dtype=np.float32)
    tables = [np.full(256, BACKGROUND, np.uint8)] + [np.full(256, 128, np.uint8)] * 2
    if mask.any():
        if reference == "slide":
            outside = lab[..., 0][~mask]
            white = float(np.percentile(outside, WHITE_PERCENTILE)) if outside.size else 255.0
            gain = (SLIDE_WHITE + L_OFFSET) / (max(white, 1.0) + L_OFFSET)
            tables[0] = _to_uint8((levels + L_OFFSET) * gain - L_OFFSET)
        else:
            values = lab[..., 0][mask].astype(np.float32)
            mean = float(values.mean(dtype=np.float64))
            spread = max(float(values.std(dtype=np.float64)), MIN_SPREAD)
            tables[0] = _to_uint8(CELL_MEAN + (levels - mean) * (CELL_SPREAD / spread))
        if chroma:  # each of a*, b* standardised as the lightness is, around neutral
            ab_mean, ab_std = (v.ravel()[1:] for v in cv2.meanStdDev(lab, mask=mask.view(np.uint8)))
            scale = CHROMA_SPREAD / np.maximum(ab_std, MIN_SPREAD)
            for c, (m, k) in enumerate(zip(ab_mean, scale, strict=True), start=1):
                deviation = levels.astype(np.float64) - m
                tables[c] = _to_uint8((128.0 + deviation * k).astype(np.float32))
    if not chroma:
        grey = cv2.LUT(lab[..., 0], tables[0])
        grey[~mask] = BACKGROUND
        return Image.fromarray(grey, "L").convert("RGB")
    view = cv2.LUT(lab, np.stack(tables, axis=-1).reshape(256, 1, 3))
    np.copyto(view, np.array([BACKGROUND, 128, 128], np.uint8), where=~mask[..., None])
    return Image.fromarray(cv2.cvtColor(view, cv2.COLOR_LAB2RGB), "RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Rounded to the nearest 8-bit level, clipped to 0-255."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


class CellLightness:
    """Transform step PIL -> PIL: `cell_lightness(img, finder.find(img), chroma)`; plain values
    only, so it pickles into DataLoader workers."""

    def __init__(
        self, finder: CellFinder | None = None, chroma: bool = False, reference: str = "cells"
    ) -> None:
        self.finder = finder or CellFinder()
        self.chroma = chroma
        self.reference = reference

    def __call__(self, image: Image.Image) -> Image.Image:
        return cell_lightness(image, self.finder.find(image), self.chroma, self.reference)

    def _key(self) -> tuple:
        return (self.finder, self.chroma, self.reference)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellLightness) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((CellLightness, *self._key()))

    def __repr__(self) -> str:
        return (
            f"CellLightness(finder={self.finder!r}, chroma={self.chroma}, "
            f"reference={self.reference!r})"
        )


# --- the stain audit's edits -------------------------------------------------------------------


@dataclass(frozen=True)
class CellColour:
    """Mean and spread of the cells' a* and b* (OpenCV 8-bit Lab): their colour, not their
    lightness."""

    mean: tuple[float, float]
    spread: tuple[float, float]


def cell_colour(image: Image.Image, cells: Cells) -> CellColour | None:
    """The colour of the cells of one image (None when no cell pixel is marked)."""
    if not cells.mask.any():
        return None
    ab = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2LAB)[..., 1:][cells.mask].astype(np.float64)
    mean, spread = ab.mean(axis=0), ab.std(axis=0)
    return CellColour((float(mean[0]), float(mean[1])), (float(spread[0]), float(spread[1])))


def recolour_cells(image: Image.Image, cells: Cells, colour: CellColour) -> Image.Image:
    """The cells given another colour: a* and b* inside the mask moved to `colour`'s mean and
    spread; their lightness (and so shape and texture) and everything outside kept."""
    rgb = _rgb(image)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    mask = cells.mask
    if mask.any():
        ab = lab[..., 1:][mask].astype(np.float64)
        mean, spread = ab.mean(axis=0), np.maximum(ab.std(axis=0), MIN_SPREAD)
        moved = (ab - mean) / spread * np.asarray(colour.spread) + np.asarray(colour.mean)
        lab[..., 1:][mask] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return _inside(rgb, cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), mask)


def grey_cells(image: Image.Image, cells: Cells) -> Image.Image:
    """The cells without colour (a* = b* = neutral), their lightness and everything outside
    kept."""
    rgb = _rgb(image)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 1:][cells.mask] = 128
    return _inside(rgb, cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), cells.mask)


def _inside(rgb: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> Image.Image:
    """`edited` inside the mask, the untouched pixels of `rgb` outside (no Lab round trip)."""
    out = rgb.copy()
    out[mask] = edited[mask]
    return Image.fromarray(out, "RGB")


def turn_hue(image: Image.Image, degrees: float) -> Image.Image:
    """The whole image's hue turned by `degrees` (positive or negative), saturation and value
    kept: a warmer or cooler lamp, another stain batch."""
    shift = int(round(degrees / 360 * 256))
    if shift % 256 == 0:  # no turn: no HSV round trip either
        return Image.fromarray(_rgb(image).copy(), "RGB")
    hsv = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
    return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL), "RGB")
