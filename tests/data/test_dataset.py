"""Preprocessing: per-image standardisation undoes brightness, contrast and white balance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import synthetic_image

from bloodcell.data.preprocess import Preprocess


def _affine(img: Image.Image, gain: tuple[float, float, float], offset: float) -> Image.Image:
    a = np.asarray(img, dtype=np.float32) * np.array(gain) + offset
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))


def test_per_image_standardisation_ignores_brightness_and_white_balance() -> None:
    img = synthetic_image("pre_b", 3, size=64)
    changed = _affine(img, (0.6, 0.7, 0.65), 10)  # darker, bluer cast, lifted blacks
    per = Preprocess(image_size=64, normalize="per_image").transform()
    imnet = Preprocess(image_size=64).transform()
    diff_per = (per(img) - per(changed)).abs().mean()
    diff_imnet = (imnet(img) - imnet(changed)).abs().mean()
    assert diff_per < 0.02  # only rounding to uint8 is left
    assert diff_imnet > 0.5
    x = per(img)
    assert torch.allclose(x.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(1, 2)), torch.ones(3), atol=0.05)  # eps in the divisor


def test_preprocess_round_trips_and_old_configs_default_to_imagenet() -> None:
    pre = Preprocess(image_size=96, normalize="per_image")
    assert Preprocess.from_dict(pre.to_dict()) == pre
    old = {k: v for k, v in Preprocess().to_dict().items() if k not in ("normalize", "stain")}
    assert Preprocess.from_dict(old).normalize == "imagenet"
    assert Preprocess.from_dict(old).stain is None
    with pytest.raises(ValueError, match="normalize"):
        Preprocess(normalize="zscore")


def test_cells_only_preprocessing_ignores_everything_but_the_cells() -> None:
    """With `cells`, two fields with the same white cell on different backgrounds and red
    cells become the same model input but for the rim of the cell (the finder's threshold is
    relative to each image's background); without it they differ everywhere."""
    import numpy as np
    from tests.conftest import PURPLE_NUCLEUS, smear_field

    from bloodcell.data.cells import CellFinder

    cell = ((80, 90, 16, PURPLE_NUCLEUS),)
    a = smear_field(1, cells=cell, background=(236, 226, 196))
    b = smear_field(2, cells=cell, background=(200, 210, 240), red_cells=25)
    a_arr, b_arr = np.asarray(a).copy(), np.asarray(b).copy()
    b_arr[60:100, 70:110] = a_arr[60:100, 70:110]  # the very same cell pixels
    b = Image.fromarray(b_arr)
    whole, cells = Preprocess(), Preprocess(cells=CellFinder().to_dict())
    assert ((whole.transform()(a) - whole.transform()(b)).abs().amax(0) > 1e-6).float().mean() > 0.5
    xa, found = cells.prepare(a)
    xb, _ = cells.prepare(b)
    assert found is not None and found.count == 1
    differs = (xa - xb).abs().amax(0) > 1e-6
    assert differs.float().mean() < 0.02  # the rim of one cell, of 224 x 224 pixels
    assert not differs[:40].any() and not differs[130:].any()  # far from the cell: all grey
    assert torch.allclose(xa, cells.transform()(a))
    assert Preprocess.from_dict(cells.to_dict()) == cells


def test_grayscale_preprocessing_keeps_no_colour() -> None:
    """With `grayscale` the three channels carry the same luminance, whatever the input's
    colours; without it a coloured smear's channels differ."""
    from tests.conftest import PURPLE_NUCLEUS, smear_field

    img = smear_field(3, cells=((60, 60, 16, PURPLE_NUCLEUS),))
    mean = torch.tensor(Preprocess().mean).view(3, 1, 1)
    std = torch.tensor(Preprocess().std).view(3, 1, 1)
    gray, colour = Preprocess(grayscale=True), Preprocess()
    raw = gray.transform()(img) * std + mean
    assert (raw - raw[0]).abs().max() < 1e-5
    assert torch.allclose(gray.transform()(img), gray.prepare(img, guard=False)[0])
    raw_colour = colour.transform()(img) * std + mean
    assert (raw_colour - raw_colour[0]).abs().max() > 0.1
    assert Preprocess.from_dict(gray.to_dict()).grayscale
    assert not Preprocess.from_dict({"image_size": 224, "mean": [0] * 3, "std": [1] * 3}).grayscale
