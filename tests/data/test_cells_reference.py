"""The white-cell finder's OpenCV and look-up-table steps give exactly what the scikit-image /
SciPy definitions they stand for give: the stain score (`separate_stains`), the disk
(`morphology.disk`), the opening, the margin dilation, and the whole finder against a reference
written with `scipy.ndimage` (the labelling, the hysteresis with a minimum core, and the order
of the boxes). Models trained before the finder moved to OpenCV then see the same inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import separate_stains
from skimage.morphology import disk
from tests.data.test_cells import (
    GREY_RED_CELL,
    LILAC_CELL,
    PURPLE_CELL,
    RED_AT,
    field,
    smear,
)

from bloodcell.data.cells import _COLUMN, CellFinder, Cells, _dilate, _disk, _open


def _background(conc: np.ndarray, percentile: float) -> float:
    """The finder's percentile: the k-th smallest value, k = floor(percentile% of the pixels)."""
    flat = np.sort(conc.ravel())
    return flat[min(int(percentile / 100 * flat.size), flat.size - 1)]


def reference_find(finder: CellFinder, image: Image.Image) -> Cells:
    """The finder as written with SciPy and scikit-image: the definition the fast one keeps."""
    img = image.convert("RGB")
    w, h = img.size
    factor = finder._factor(w, h)
    small = np.asarray(img.reduce(factor) if factor > 1 else img)
    conc = separate_stains(small.astype(np.float32) * np.float32(1 / 255), _COLUMN)[..., 0]
    score = conc - _background(conc, finder.background_percentile)
    extent = score > finder.low
    if finder.opening:
        extent = ndi.binary_opening(extent, disk(finder.opening))
    labels, n = ndi.label(extent)
    pixel = factor * factor / (h * w)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * pixel
    core = np.bincount(labels.ravel(), weights=(score > finder.high).ravel(), minlength=n + 1)
    keep = (core[1:] > 0) & (core[1:] * pixel >= finder.min_area) & (area <= finder.max_area)
    mask = np.concatenate([[False], keep])[labels]
    grow = math.ceil(finder.margin / factor)
    if grow:
        mask = ndi.maximum_filter(mask, size=2 * grow + 1)
    sh, sw = mask.shape
    boxes = tuple(
        (
            max(s[0].start - grow, 0) * factor,
            max(s[1].start - grow, 0) * factor,
            min(min(s[0].stop + grow, sh) * factor, h),
            min(min(s[1].stop + grow, sw) * factor, w),
        )
        for i, s in enumerate(ndi.find_objects(labels))
        if s is not None and keep[i]
    )
    if factor > 1:
        mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:h, :w]
    return Cells(mask, boxes)


def test_score_is_separate_stains_above_the_background() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 254, 128]]  # the ends of the range
    conc = separate_stains(rgb.astype(np.float32) * np.float32(1 / 255), _COLUMN)[..., 0]
    want = conc - _background(conc, 25.0)
    np.testing.assert_allclose(CellFinder().score(rgb), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius", range(0, 7))
def test_disk_is_skimage_disk(radius: int) -> None:
    assert np.array_equal(_disk(radius), disk(radius).astype(np.uint8))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_opening_is_scipy_binary_opening_up_to_the_edges(radius: int) -> None:
    rng = np.random.default_rng(radius)
    binary = rng.random((37, 41)) < 0.6
    binary[:, 0] = binary[0, :] = True  # regions touching the border are eroded from outside
    got = _open(binary.view(np.uint8), radius).view(bool)
    assert np.array_equal(got, ndi.binary_opening(binary, disk(radius)))


@pytest.mark.parametrize("grow", [1, 2, 4])
def test_margin_dilation_is_a_square_maximum_filter(grow: int) -> None:
    rng = np.random.default_rng(grow)
    binary = rng.random((30, 33)) < 0.05
    binary[0, 0] = binary[-1, 5] = True
    got = _dilate(binary.view(np.uint8), grow).view(bool)
    assert np.array_equal(got, ndi.maximum_filter(binary, size=2 * grow + 1))


def _scenes() -> list[Image.Image]:
    """Fields with several cells (so the box order matters), cells at the border, grey red
    cells, odd sizes and no cell at all."""
    many = [((r, c, 12), PURPLE_CELL if (r + c) % 2 else LILAC_CELL) for r, c in
            [(20, 200), (30, 40), (100, 120), (200, 15), (180, 190), (0, 100)]]  # fmt: skip
    return [
        field(),
        field(size=(150, 190), seed=3),
        smear(white=many, red=RED_AT, seed=1),
        smear(white=many[:3], red=RED_AT, red_colour=GREY_RED_CELL, size=(300, 260), seed=2),
        smear(red=RED_AT, seed=4),
        field(size=(60, 70)),
    ]


@pytest.mark.parametrize(
    "finder",
    [CellFinder(), CellFinder(margin=7, opening=2), CellFinder(work_size=0, margin=0, opening=0)],
    ids=["default", "wide", "full-size"],
)
def test_finder_equals_its_scipy_definition(finder: CellFinder) -> None:
    for i, img in enumerate(_scenes()):
        got, want = finder.find(img), reference_find(finder, img)
        assert got.boxes == want.boxes, i
        assert np.array_equal(got.mask, want.mask), i


def test_scenes_hold_several_cells_so_the_order_of_boxes_is_checked() -> None:
    counts = [reference_find(CellFinder(), img).count for img in _scenes()]
    assert max(counts) >= 4 and 0 in counts


@pytest.mark.shared_data
@pytest.mark.slow
def test_finder_equals_its_scipy_definition_on_the_dataset(shared_data: Path) -> None:
    paths = sorted((shared_data / "Original").rglob("*.jpg"))[::14]
    assert len(paths) > 150
    finder = CellFinder()
    for p in paths:
        with Image.open(p) as im:
            img = im.convert("RGB")
        got, want = finder.find(img), reference_find(finder, img)
        assert got.boxes == want.boxes and np.array_equal(got.mask, want.mask), p
