"""Shared fixtures: small synthetic smear-like images in each supported layout.

No real dataset image is ever copied into the repository; tests that need the real
data read it from ../shared and are skipped when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bloodcell.labels import LABELS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "leukemia"

#: Folder names per layout, in LABELS order.
LAYOUT_FOLDERS = {
    "mehradaria": ("Original/Benign", "Original/Early", "Original/Pre", "Original/Pro"),
    "4class": tuple(
        f"Blood cell Cancer [ALL]/{n}"
        for n in ("Benign", "[Malignant] early Pre-B", "[Malignant] Pre-B", "[Malignant] Pro-B")
    ),
    "generic": ("benign", "early_pre_b", "pre_b", "pro_b"),
}

# One clearly different colour per class, so a tiny model can learn them quickly.
CLASS_COLOURS = {
    "benign": (200, 60, 60),
    "early_pre_b": (60, 200, 60),
    "pre_b": (60, 60, 200),
    "pro_b": (200, 200, 60),
}


def synthetic_image(label: str, seed: int, size: int = 64) -> Image.Image:
    """One coloured 'cell' whose colour encodes the class, over a smooth random background.

    The background is an upscaled random 8x8 field, so that unrelated images have clearly
    different perceptual hashes (plain noise backgrounds all hash alike and would be grouped
    as near-duplicates by `bloodcell data verify`).
    """
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(150, 250, size=(8, 8, 3), dtype=np.uint8))
    img = np.array(field.resize((size, size), Image.Resampling.BICUBIC))
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    r = size // 5
    yy, xx = np.ogrid[:size, :size]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    colour = np.array(CLASS_COLOURS[label]) + rng.integers(-20, 20, size=3)
    img[mask] = np.clip(colour, 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def make_dataset(
    root: Path, layout: str = "mehradaria", n_per_class: int = 6, size: int = 64
) -> Path:
    """Write a synthetic dataset in `layout` under `root` and return the data root."""
    for label, folder in zip(LABELS, LAYOUT_FOLDERS[layout], strict=True):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            seed = LABELS.index(label) * 10_000 + i
            synthetic_image(label, seed, size).save(d / f"{label}-{i:03d}.jpg", quality=95)
    return root


@pytest.fixture
def synthetic_data(tmp_path: Path) -> Path:
    """A small mehradaria-layout dataset (6 images per class)."""
    return make_dataset(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    """The real dataset from ../shared; the test is skipped when it is absent."""
    path = Path(os.environ.get("BLOODCELL_SHARED_DATA", SHARED_DATA))
    if not (path / "Original").is_dir():
        pytest.skip(f"real dataset not found at {path}")
    return path


#: Colours of a synthetic smear: a yellowish background, pink red cells, and white cells with
#: a dark purple nucleus (as in Early/Pre/Benign) or a lilac one (as in Pro).
SMEAR_BACKGROUND = (236, 226, 196)
RED_CELL = (222, 170, 170)
PURPLE_NUCLEUS = (110, 60, 160)
LILAC_NUCLEUS = (190, 120, 200)


def smear_field(
    seed: int,
    size: int = 224,
    cells: tuple[tuple[int, int, int, tuple[int, int, int]], ...] = (),
    red_cells: int = 12,
    background: tuple[int, int, int] = SMEAR_BACKGROUND,
) -> Image.Image:
    """A synthetic smear field: red-cell discs over a flat background, and white cells drawn
    as (row, col, radius, nucleus colour) discs, so a finder can be checked against them."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = background
    yy, xx = np.ogrid[:size, :size]
    r_red = max(2, size // 22)
    for _ in range(red_cells):
        cy, cx = rng.integers(r_red, size - r_red, size=2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r_red**2] = RED_CELL
    for cy, cx, r, colour in cells:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    noise = rng.integers(-4, 5, size=img.shape)
    return Image.fromarray(np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8))
