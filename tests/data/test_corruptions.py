"""Corruptions: deterministic under a seed, keep shape/mode/range, change the image, and sit at
the reference severities (x0.6, x1.4, JPEG 30, half size in the middle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import synthetic_image
from torchvision import tv_tensors

from bloodcell.data.corruptions import (
    CORRUPTIONS,
    MIDDLE_SEVERITY,
    RandomCorruption,
    corrupt,
    get,
    random_corruption,
)


@pytest.fixture(scope="module")
def img() -> Image.Image:
    return synthetic_image("pre_b", seed=3, size=48)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_deterministic_and_keeps_the_format(img: Image.Image, name: str) -> None:
    c = CORRUPTIONS[name]
    assert len(c.severities) == 3
    for severity in c.severities:
        a = corrupt(img, name, severity, np.random.default_rng(7))
        b = corrupt(img, name, severity, np.random.default_rng(7))
        assert (a.size, a.mode) == (img.size, "RGB")
        arr = np.asarray(a)
        assert arr.dtype == np.uint8 and arr.shape == (48, 48, 3)
        assert np.array_equal(arr, np.asarray(b)), "same seed, same image"
        assert not np.array_equal(arr, np.asarray(img)), "a nonzero severity changes the image"
    assert np.array_equal(np.asarray(img), np.asarray(synthetic_image("pre_b", 3, 48)))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_identity_parameter_leaves_the_image_nearly_unchanged(img: Image.Image, name: str) -> None:
    c = CORRUPTIONS[name]
    out = np.asarray(c.fn(img, c.identity, np.random.default_rng(0)), dtype=int)
    tolerance = 3 if name in {"jpeg", "downscale", "hue"} else 0  # lossy codecs / HSV rounding
    assert np.abs(out - np.asarray(img, dtype=int)).mean() <= tolerance


def test_severities_grow_monotonically(img: Image.Image) -> None:
    base = np.asarray(img, dtype=float)
    for name, c in CORRUPTIONS.items():
        change = [
            np.abs(np.asarray(c(img, s, np.random.default_rng(1)), dtype=float) - base).mean()
            for s in c.severities
        ]
        assert change == sorted(change), (name, change)


def test_middle_severities_are_the_issues_values() -> None:
    middle = {name: c.value(MIDDLE_SEVERITY) for name, c in CORRUPTIONS.items()}
    assert middle["darken"] == 0.6 and middle["brighten"] == 1.4
    assert middle["jpeg"] == 30 and middle["downscale"] == 0.5
    assert {"contrast", "hue", "stain", "blur", "noise"} <= set(middle)


def test_brightness_multiplies_pixels() -> None:
    flat = Image.new("RGB", (8, 8), (100, 150, 200))
    assert np.asarray(corrupt(flat, "darken", 2))[0, 0].tolist() == [60, 90, 120]
    assert np.asarray(corrupt(flat, "brighten", 2))[0, 0].tolist() == [140, 210, 255]


def test_seeded_corruptions_differ_between_seeds(img: Image.Image) -> None:
    a = corrupt(img, "noise", 2, np.random.default_rng(1))
    b = corrupt(img, "noise", 2, np.random.default_rng(2))
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_unknown_names_and_severities_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        get("blur,sharpen")
    with pytest.raises(ValueError, match="severity must be 1-3"):
        CORRUPTIONS["blur"].value(4)
    assert [c.name for c in get("jpeg, blur")] == ["jpeg", "blur"]


def test_random_corruption_augmentation(img: Image.Image) -> None:
    out, name, value = random_corruption(img, np.random.default_rng(0), ["darken", "jpeg"])
    assert name in {"darken", "jpeg"} and out.size == img.size
    lo, hi = sorted((CORRUPTIONS[name].identity, CORRUPTIONS[name].value(MIDDLE_SEVERITY)))
    assert lo <= value <= hi
    aug = RandomCorruption(p=1.0, seed=3)
    assert np.array_equal(np.asarray(aug(img)), np.asarray(RandomCorruption(p=1.0, seed=3)(img)))
    assert RandomCorruption(p=0.0)(img) is img


def test_random_corruption_on_a_tensor_keeps_its_type(img: Image.Image) -> None:
    t = tv_tensors.Image(torch.from_numpy(np.array(img)).permute(2, 0, 1))
    out = RandomCorruption(p=1.0, names=["noise"], seed=0)(t)
    assert isinstance(out, tv_tensors.Image)
    assert out.shape == t.shape and out.dtype == torch.uint8
    assert not torch.equal(out, t)
    with pytest.raises(TypeError):
        RandomCorruption(p=1.0)(t.float())
