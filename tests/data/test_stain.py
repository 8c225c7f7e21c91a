"""Stain normalisation (torchstain, real): fitted once, saved as plain numbers, restored exactly,
and harmless on an image it cannot normalise."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from bloodcell.data import stain as stain_module
from bloodcell.data.dataset import Augment
from bloodcell.data.preprocess import Preprocess
from bloodcell.data.stain import METHODS, StainNormalizer

# Ruifrok & Johnston's haematoxylin and eosin optical-density directions.
H_REF = (0.65, 0.70, 0.29)
E_REF = (0.07, 0.99, 0.11)


def he_image(
    seed: int = 0,
    size: int = 96,
    h: tuple[float, float, float] = H_REF,
    e: tuple[float, float, float] = E_REF,
    h_gain: float = 1.0,
    e_gain: float = 1.0,
) -> Image.Image:
    """A smear-like H&E image: pink background, cells with eosin cytoplasm and purple nuclei.

    Built in optical density (Beer-Lambert), so that another stain (`h`, `e`) and another
    staining strength (`h_gain`, `e_gain`) give the same picture as another lab would.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ch = np.full((size, size), 0.02)
    ce = 0.15 + 0.05 * rng.random((size, size))
    for _ in range(6):
        cy, cx = rng.integers(10, size - 10, size=2)
        r = int(rng.integers(8, 14))
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        cell = d2 <= r * r
        ce[cell] = 0.6 + 0.2 * rng.random(cell.sum())
        nucleus = d2 <= (0.6 * r) ** 2
        ch[nucleus] = 0.8 + 0.6 * rng.random(nucleus.sum())
    hv, ev = (np.asarray(v) / np.linalg.norm(v) for v in (h, e))
    od = h_gain * ch[..., None] * hv + e_gain * ce[..., None] * ev
    rgb = np.clip(np.rint(255.0 * np.exp(-od)), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def restained(seed: int = 0) -> Image.Image:
    """The same picture as `he_image(seed)`, stained by another lab: bluer haematoxylin, stronger;
    a more orange eosin, weaker."""
    return he_image(seed, h=(0.45, 0.80, 0.20), e=(0.20, 0.95, 0.25), h_gain=1.4, e_gain=0.6)


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


@pytest.fixture(scope="module")
def fitted() -> dict[str, StainNormalizer]:
    ref = he_image(seed=1)
    return {m: StainNormalizer.fit(ref, m) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_fit_and_normalise_keep_shape_dtype_and_mode(
    fitted: dict[str, StainNormalizer], method: str
) -> None:
    img = he_image(seed=0, size=80)
    out = fitted[method](img)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == img.size
    assert np.asarray(out).dtype == np.uint8
    assert mean_diff(out, img) > 0.5  # it did change the colours


def test_reinhard_on_its_own_reference_gives_the_reference_back() -> None:
    ref = he_image(seed=1)
    out = StainNormalizer.fit(ref, "reinhard")(ref)
    diff = np.abs(np.asarray(out, int) - np.asarray(ref, int))
    assert diff.mean() < 1.0 and diff.max() <= 3  # LAB round trip and truncation to uint8


@pytest.mark.parametrize("method", METHODS)
def test_two_stainings_of_one_picture_end_closer_together(
    fitted: dict[str, StainNormalizer], method: str
) -> None:
    a, b = he_image(seed=0), restained(seed=0)
    before = mean_diff(a, b)
    after = mean_diff(fitted[method](a), fitted[method](b))
    assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("method", METHODS)
def test_to_dict_round_trips_through_json_and_normalises_identically(
    fitted: dict[str, StainNormalizer], method: str
) -> None:
    norm = fitted[method]
    d = json.loads(json.dumps(norm.to_dict()))
    assert d["method"] == method and set(d["params"]) == set(stain_module.FITTED[method])
    back = StainNormalizer.from_dict(d)
    assert back == norm
    img = restained(seed=2)
    assert np.array_equal(np.asarray(back(img)), np.asarray(norm(img)))


def test_restored_normaliser_computes_what_torchstain_fitted_one_does() -> None:
    import torchstain

    ref, img = np.asarray(he_image(seed=1)), np.asarray(restained(seed=3))
    mac = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    mac.fit(ref)
    rein = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
    rein.fit(ref)
    ours = {m: StainNormalizer.fit(Image.fromarray(ref), m) for m in METHODS}
    restored = {
        m: StainNormalizer.from_dict(json.loads(json.dumps(n.to_dict()))) for m, n in ours.items()
    }
    pil = Image.fromarray(img)
    assert np.array_equal(
        np.asarray(restored["macenko"](pil)), mac.normalize(I=img, stains=False)[0]
    )
    assert np.array_equal(np.asarray(restored["reinhard"](pil)), rein.normalize(img))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's own, on the empty pixel set
@pytest.mark.parametrize("method", METHODS)
def test_blank_image_comes_back_unchanged_with_one_warning(
    fitted: dict[str, StainNormalizer],
    method: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(stain_module, "_warned", False)
    blank = Image.new("RGB", (40, 30), (255, 255, 255))
    with caplog.at_level(logging.WARNING, logger="bloodcell.data.stain"):
        assert fitted[method](blank) is blank
        t = torch.full((3, 30, 40), 255, dtype=torch.uint8)
        assert fitted[method](t) is t
    assert len(caplog.records) == 1 and "unnormalised" in caplog.records[0].getMessage()


@pytest.mark.parametrize("method", METHODS)
def test_pil_and_tensor_paths_agree(fitted: dict[str, StainNormalizer], method: str) -> None:
    img = restained(seed=4)
    want = torch.from_numpy(np.array(fitted[method](img))).permute(2, 0, 1)
    plain = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    out = fitted[method](plain)
    assert type(out) is torch.Tensor and torch.equal(out, want)
    wrapped = fitted[method](tv_tensors.Image(plain))
    assert isinstance(wrapped, tv_tensors.Image) and torch.equal(
        wrapped.as_subclass(torch.Tensor), want
    )
    with pytest.raises(TypeError, match="uint8"):
        fitted[method](plain.float())


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stain normalisation 'vahadane'"):
        StainNormalizer.fit(he_image(), "vahadane")
    with pytest.raises(ValueError, match="unknown stain normalisation"):
        StainNormalizer.from_dict({"method": "vahadane", "params": {}})
    with pytest.raises(ValueError, match="parameters"):
        StainNormalizer.from_dict({"method": "reinhard", "params": {"HERef": [[1, 2]] * 3}})
    bad = {"target_means": [50.0, 0.0, 0.0], "target_stds": [1.0, float("nan"), 1.0]}
    with pytest.raises(ValueError, match="target_stds"):
        StainNormalizer.from_dict({"method": "reinhard", "params": bad})
    with pytest.raises(ValueError, match="HERef"):
        StainNormalizer("macenko", {"HERef": [[1, 2]] * 2, "maxCRef": [1.0, 1.0]})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("method", METHODS)
def test_fitting_on_a_blank_image_fails_clearly(method: str) -> None:
    with pytest.raises(ValueError, match=f"{method} stain normalisation cannot be fitted"):
        StainNormalizer.fit(Image.new("RGB", (20, 20), "white"), method)


def test_preprocess_carries_the_normaliser_and_applies_it_first(
    fitted: dict[str, StainNormalizer],
) -> None:
    norm = fitted["macenko"]
    pre = Preprocess(image_size=48, stain=norm.to_dict())
    saved = json.loads(json.dumps(pre.to_dict()))
    assert saved["stain"] == norm.to_dict()
    assert Preprocess.from_dict(saved) == pre
    assert Preprocess.from_dict(saved) != Preprocess(image_size=48)
    hash(pre)  # still usable as a key
    img = restained(seed=5)
    assert torch.equal(pre.transform()(img), Preprocess(image_size=48).transform()(norm(img)))
    aug = Augment(color=0.0, scale=(1.0, 1.0), flips=False, rot90=False).transform(pre)
    assert torch.allclose(aug(img), pre.transform()(img), atol=0.05)  # same up to the crop resize
    with pytest.raises(ValueError, match="unknown stain"):
        Preprocess(stain={"method": "nope", "params": {}})
