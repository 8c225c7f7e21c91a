"""The red-cell scale: measured on synthetic fields of two magnifications, the image brought to
the training scale, refused when nothing can be measured; and on the real images when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bloodcell.data.cells import CellFinder
from bloodcell.data.scale import (
    TRAINING_RED_CELL_PX,
    Placement,
    Scale,
    measure_scale,
    to_training_scale,
)

BACKGROUND = (238, 236, 228)
RED = (200, 160, 170)


def red_cell_field(size: int, diameter: float, seed: int = 0, cells: int = 40) -> Image.Image:
    """Red cells of one `diameter` (a darker rim, a pale centre) scattered without overlap."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:] = BACKGROUND
    yy, xx = np.ogrid[:size, :size]
    r = diameter / 2
    centres: list[tuple[float, float]] = []
    for _ in range(cells * 20):
        cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (2.2 * r) ** 2 for y, x in centres):
            centres.append((cy, cx))
        if len(centres) == cells:
            break
    for cy, cx in centres:
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        img[d2 <= r * r] = RED
        img[d2 <= (0.35 * r) ** 2] = (np.asarray(RED) + BACKGROUND) / 2  # central pallor
    img += rng.normal(0, 2, img.shape)
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))


@pytest.mark.parametrize(("size", "diameter"), [(224, 16.0), (360, 70.0)])
def test_measures_the_red_cells_diameter(size: int, diameter: float) -> None:
    scale = measure_scale(red_cell_field(size, diameter, cells=40 if diameter < 30 else 12))
    assert scale.red_cell_px is not None
    assert scale.red_cell_px == pytest.approx(diameter, rel=0.15)
    assert scale.red_cells >= 3
    assert scale.factor == pytest.approx(scale.red_cell_px / TRAINING_RED_CELL_PX)


def test_training_scale_matches_and_a_100x_crop_does_not() -> None:
    assert measure_scale(red_cell_field(224, 16.0)).matches
    big = measure_scale(red_cell_field(360, 70.0, cells=12))
    assert not big.matches and big.factor is not None and big.factor > 3


def test_no_estimate_without_red_cells() -> None:
    for image in (Image.new("RGB", (224, 224), BACKGROUND), Image.new("RGB", (4, 4))):
        scale = measure_scale(image)
        assert scale.red_cell_px is None and scale.factor is None and not scale.matches


def test_a_magnified_field_is_brought_to_the_training_scale() -> None:
    field = red_cell_field(360, 70.0, cells=12)
    scale = measure_scale(field)
    out, placement = to_training_scale(field, scale, size=224)
    assert out.size == (224, 224)
    again = measure_scale(out)
    assert again.red_cell_px == pytest.approx(TRAINING_RED_CELL_PX, rel=0.25)
    assert again.matches
    # The whole input fits inside and maps back: the rescaled image's centre is the input's.
    assert placement.factor == pytest.approx(scale.factor, rel=0.01)
    top, left, bottom, right = placement.to_input((112, 112, 113, 113))
    assert abs(top - 180) <= placement.factor + 1 and abs(left - 180) <= placement.factor + 1


def test_an_image_at_the_training_scale_or_unknown_is_left_alone() -> None:
    field = red_cell_field(224, 16.0)
    for scale in (measure_scale(field), Scale(None, 0)):
        out, placement = to_training_scale(field, scale)
        assert out is field and placement == Placement()


def test_a_wide_low_magnification_field_is_cropped_around_its_centre() -> None:
    wide = red_cell_field(448, 4.0, cells=150)  # a quarter of the training scale
    scale = Scale(4.0, 100)
    out, placement = to_training_scale(wide, scale, size=224)
    assert out.size == (224, 224)
    assert placement.factor == pytest.approx(0.25)
    assert placement.left < 0 and placement.top < 0  # the input is larger than the output


def test_the_white_cells_are_left_out_of_the_measure() -> None:
    field = np.asarray(red_cell_field(224, 16.0)).copy()
    yy, xx = np.ogrid[:224, :224]
    field[(yy - 112) ** 2 + (xx - 112) ** 2 <= 40**2] = (110, 60, 160)  # a big white cell
    image = Image.fromarray(field)
    cells = CellFinder().find(image)
    assert cells.count >= 1
    scale = measure_scale(image, cells)
    assert scale.red_cell_px == pytest.approx(16.0, rel=0.2)


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED / "wbc-types").is_dir() or not (SHARED / "leukemia").is_dir(),
    reason="needs ../shared/data/leukemia and ../shared/data/wbc-types",
)
def test_real_images_the_dataset_at_its_scale_and_barcelona_crops_about_4x() -> None:
    def factors(folder: Path, step: int) -> list[float]:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        out = []
        for path in files[::step]:
            with Image.open(path) as im:
                f = measure_scale(im.convert("RGB")).factor
            if f is not None:
                out.append(f)
        return out

    own = factors(SHARED / "leukemia" / "Original", 40)
    barcelona = factors(SHARED / "wbc-types", 40)
    assert len(own) >= 0.9 * 70 and len(barcelona) >= 20
    assert np.mean([Scale(f * TRAINING_RED_CELL_PX, 3).matches for f in own]) >= 0.95
    assert 3.0 <= float(np.median(barcelona)) <= 6.5
