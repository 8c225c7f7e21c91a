"""Image corruptions that mimic another lab's microscope, stain or camera.

Used two ways: `bloodcell evaluate RUN --robustness` re-evaluates a split under every corruption
at three severities, and `RandomCorruption` draws a random one as training augmentation.

Every corruption is a small pure function `f(img, value, rng) -> img` on a PIL RGB image: it keeps
the size, the mode (RGB) and the uint8 range, and is deterministic for a given
`numpy.random.Generator` state (only `hue`, `stain` and `noise` draw from it). A `Corruption` in
`CORRUPTIONS` names the parameter value at severities 1, 2 and 3; severity 2, the middle one, is
the reference case, for which the project targets >= 95% accuracy.

Parameters (image pixels are those of the stored image, 224 x 224 in this dataset):

============  ==============================================================  ==================
name          what it does                                                    severity 1 / 2 / 3
============  ==============================================================  ==================
darken        every pixel x factor (PIL `ImageEnhance.Brightness`)             x0.8 / x0.6 / x0.4
brighten      every pixel x factor, clipped at 255                             x1.2 / x1.4 / x1.6
contrast      blend towards the mean grey (PIL `ImageEnhance.Contrast`)        x0.8 / x0.6 / x0.4
hue           rotate the HSV hue by +-degrees (sign drawn from rng)            10 / 20 / 30 deg
stain         haematoxylin and eosin concentrations (HED colour deconvolution, 0.15 / 0.3 / 0.5
              Ruifrok & Johnston matrices from scikit-image) each x (1 +- s),
              signs drawn from rng independently
blur          Gaussian blur, sigma in pixels (PIL `GaussianBlur`)             1 / 2 / 3 px
jpeg          re-encode as JPEG at this quality (PIL, 4:2:0 subsampling)       50 / 30 / 10
downscale     shrink by this factor (bilinear, antialiased), enlarge back      0.75 / 0.5 / 0.25
              to the original size (bicubic): a lower-resolution camera
noise         add Gaussian noise, sigma in 0-255 grey levels, clip            5 / 10 / 20
============  ==============================================================  ==================

The HED transform is done in optical density, `od = -log((rgb + 1) / 256)`, with scikit-image's
`hed_from_rgb` / `rgb_from_hed` matrices but without its clipping of negative concentrations,
so that an unchanged image comes back exactly (scikit-image's `rgb2hed`/`hed2rgb` round trip
moves some pixels by up to ~100 grey levels).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

CorruptFn = Callable[[Image.Image, float, np.random.Generator], Image.Image]

#: Severities are 1-based; this one is the reference level (x0.6, x1.4, JPEG 30, 0.5).
MIDDLE_SEVERITY = 2


# --- the corruptions ------------------------------------------------------------------------------


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _from_float(arr: np.ndarray) -> Image.Image:
    """Round and clip a float (H, W, 3) array back to a uint8 RGB image."""
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def brightness(img: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    """Multiply every pixel by `factor` (a dimmer or brighter lamp, another exposure)."""
    return ImageEnhance.Brightness(_rgb(img)).enhance(factor)


def contrast(img: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    """Blend towards the image's mean grey: `factor` < 1 washes the smear out."""
    return ImageEnhance.Contrast(_rgb(img)).enhance(factor)


def hue(img: Image.Image, degrees: float, rng: np.random.Generator) -> Image.Image:
    """Rotate the hue by `degrees` in a random direction (white balance, stain tint)."""
    h, s, v = _rgb(img).convert("HSV").split()
    shift = int(round(_sign(rng) * degrees / 360 * 256))
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def stain(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Scale the haematoxylin and eosin concentrations by 1 +- `strength` each (signs random):
    a lab that stains longer, shorter, or with another batch of dye."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    od = -np.log((np.asarray(_rgb(img), dtype=np.float64) + 1.0) / 256.0)
    hed = od @ hed_from_rgb
    hed[..., 0] *= 1.0 + _sign(rng) * strength
    hed[..., 1] *= 1.0 + _sign(rng) * strength
    return _from_float(256.0 * np.exp(-(hed @ rgb_from_hed)) - 1.0)


def blur(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur with standard deviation `sigma` pixels (out of focus)."""
    return _rgb(img).filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else _rgb(img)


def jpeg(img: Image.Image, quality: float, rng: np.random.Generator) -> Image.Image:
    """Re-encode as a JPEG of this quality (a camera or upload that compresses hard)."""
    buf = io.BytesIO()
    _rgb(img).save(buf, format="JPEG", quality=int(round(quality)))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def downscale(img: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    """Shrink by `factor` and enlarge back to the same size (lower magnification/resolution)."""
    img = _rgb(img)
    small = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    down = img.resize(small, Image.Resampling.BILINEAR, reducing_gap=None)
    return down.resize(img.size, Image.Resampling.BICUBIC)


def noise(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Add Gaussian noise of `sigma` grey levels (a noisy sensor, short exposure)."""
    arr = np.asarray(_rgb(img), dtype=np.float32)
    return _from_float(arr + rng.normal(0.0, sigma, size=arr.shape).astype(np.float32))


# --- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """A corruption with its parameter at each severity (1-based) and its no-op value."""

    name: str
    description: str
    fn: CorruptFn
    levels: tuple[float, ...]
    identity: float
    fmt: str = "{:g}"

    @property
    def severities(self) -> list[int]:
        return list(range(1, len(self.levels) + 1))

    def value(self, severity: int) -> float:
        """The parameter at `severity` (1 = mildest); raises ValueError outside the range."""
        if not 1 <= severity <= len(self.levels):
            raise ValueError(f"{self.name}: severity must be 1-{len(self.levels)}, not {severity}")
        return self.levels[severity - 1]

    def label(self, severity: int) -> str:
        """'x0.6', 'q30', '2px' ... for tables and plots."""
        return self.fmt.format(self.value(severity))

    def __call__(
        self, img: Image.Image, severity: int, rng: np.random.Generator | None = None
    ) -> Image.Image:
        return self.fn(img, self.value(severity), rng or np.random.default_rng(0))

    def sample_value(self, rng: np.random.Generator, max_severity: int = MIDDLE_SEVERITY) -> float:
        """A parameter uniformly between no change and the level at `max_severity`."""
        end = self.value(max_severity)
        return float(self.identity + (end - self.identity) * rng.random())


def _c(
    name: str, description: str, fn: CorruptFn, levels: Sequence[float], identity: float, fmt: str
) -> Corruption:
    return Corruption(name, description, fn, tuple(levels), identity, fmt)


#: Every corruption, in report order.
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        _c("darken", "brightness x factor", brightness, (0.8, 0.6, 0.4), 1.0, "x{:g}"),
        _c("brighten", "brightness x factor", brightness, (1.2, 1.4, 1.6), 1.0, "x{:g}"),
        _c("contrast", "contrast x factor (to mean grey)", contrast, (0.8, 0.6, 0.4), 1.0, "x{:g}"),
        _c("hue", "hue rotated by +-degrees", hue, (10, 20, 30), 0.0, "{:g}deg"),
        _c("stain", "HED: H and E x (1 +- s)", stain, (0.15, 0.3, 0.5), 0.0, "s={:g}"),
        _c("blur", "Gaussian blur, sigma in pixels", blur, (1, 2, 3), 0.0, "{:g}px"),
        _c("jpeg", "JPEG re-encoding at quality q", jpeg, (50, 30, 10), 100.0, "q{:g}"),
        _c("downscale", "down by factor, up again", downscale, (0.75, 0.5, 0.25), 1.0, "x{:g}"),
        _c("noise", "Gaussian noise, sigma in grey levels", noise, (5, 10, 20), 0.0, "sd={:g}"),
    )
}


def get(names: str | Sequence[str] | None) -> list[Corruption]:
    """Corruptions by name ("a,b" or a list; None = all), with a clear error for typos."""
    if names is None:
        return list(CORRUPTIONS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(CORRUPTIONS)}")
    return [CORRUPTIONS[n] for n in names]


def corrupt(
    img: Image.Image, name: str, severity: int, rng: np.random.Generator | None = None
) -> Image.Image:
    """Apply the named corruption at `severity` (1-3)."""
    return CORRUPTIONS[name](img, severity, rng)


# --- as augmentation ------------------------------------------------------------------------------


def random_corruption(
    img: Image.Image,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    max_severity: int = MIDDLE_SEVERITY,
) -> tuple[Image.Image, str, float]:
    """One corruption drawn uniformly from `names`, at a parameter drawn uniformly between no
    change and its `max_severity` level; returns (image, name, parameter)."""
    pool = get(names)
    c = pool[int(rng.integers(len(pool)))]
    value = c.sample_value(rng, max_severity)
    return c.fn(img, value, rng), c.name, value


class RandomCorruption:
    """Training augmentation: with probability `p`, apply one random corruption (mild to
    `max_severity`). Takes a PIL image or a uint8 (3, H, W) tensor (e.g. inside a torchvision v2
    pipeline after `ToImage`) and returns the same kind.

    Without `seed`, each call seeds from Python's `random`, which the DataLoader seeds per
    worker, so workers do not repeat each other. With `seed`, `at(img, index)` draws from
    (seed, index) alone: image `index` gets the same corruption in any order, thread or process.
    """

    def __init__(
        self,
        p: float = 0.5,
        names: Sequence[str] | None = None,
        max_severity: int = MIDDLE_SEVERITY,
        seed: int | None = None,
    ) -> None:
        self.p = p
        self.names = [c.name for c in get(names)]
        self.max_severity = max_severity
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _generator(self) -> np.random.Generator:
        return self._rng or np.random.default_rng(random.getrandbits(64))

    def __call__(self, img: Any) -> Any:
        return self._apply(img, self._generator())

    def at(self, img: Any, index: int) -> Any:
        """`img`, the image numbered `index`, corrupted with draws from (seed, index)."""
        if self.seed is None:
            raise ValueError("RandomCorruption.at needs a seed")
        return self._apply(img, np.random.default_rng((self.seed, index)))

    def _apply(self, img: Any, rng: np.random.Generator) -> Any:
        if rng.random() >= self.p:
            return img
        if isinstance(img, Image.Image):
            return random_corruption(img, rng, self.names, self.max_severity)[0]
        return _on_tensor(
            img, lambda pil: random_corruption(pil, rng, self.names, self.max_severity)[0]
        )

    def __repr__(self) -> str:
        return f"RandomCorruption(p={self.p}, names={self.names}, max_severity={self.max_severity})"


def _on_tensor(img: Any, fn: Callable[[Image.Image], Image.Image]) -> Any:
    """Run a PIL corruption on a uint8 (3, H, W) torch tensor, keeping its tv_tensor type."""
    import torch
    from torchvision import tv_tensors

    if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.ndim != 3:
        raise TypeError("RandomCorruption takes a PIL image or a uint8 (3, H, W) tensor")
    pil = Image.fromarray(img.permute(1, 2, 0).cpu().numpy(), "RGB")
    out = torch.from_numpy(np.array(fn(pil))).permute(2, 0, 1).contiguous()
    return tv_tensors.wrap(out, like=img) if isinstance(img, tv_tensors.Image) else out
