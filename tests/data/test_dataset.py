"""Preprocessing: per-image standardisation undoes brightness, contrast and white balance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import synthetic_image

from bloodcell.data.dataset import Preprocess


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
