"""Optional stain normalisation (Macenko or Reinhard, by `torchstain`) as a preprocessing step.

Smears from another lab differ mostly in their stain; mapping every image onto the colours of
one reference image removes part of that difference before the model sees it. The parameters
fitted on the reference are a few numbers, kept as plain lists so that they are saved in the
model's `config.json` (`Preprocess.stain`): prediction, export and serving then normalise
exactly as training did, without the reference image.

The algorithms are torchstain's (numpy backend); this module only fits, stores and restores
their fitted attributes, and makes a failure on one image harmless.
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: The attributes torchstain's `fit` sets, per method, with the dtype and shape it gives them
#: (restoring the same dtype makes a restored normaliser compute exactly what the fitted one did).
FITTED: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    "macenko": {"HERef": ("float64", (3, 2)), "maxCRef": ("float64", (2,))},
    "reinhard": {"target_means": ("float32", (3,)), "target_stds": ("float32", (3,))},
}
METHODS = tuple(FITTED)

# What torchstain raises on an image it cannot normalise (no or too few stained pixels, a flat
# channel, eigen-decomposition failure); under `np.errstate` NaNs and divisions by zero raise
# FloatingPointError (an ArithmeticError) instead of ending up as garbage pixels.
_IMAGE_ERRORS = (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError)
_warned = False


def _torchstain(method: str) -> Any:
    """An unfitted torchstain normaliser (numpy backend: no extra device or framework)."""
    import torchstain

    if method == "macenko":
        return torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    return torchstain.normalizers.ReinhardNormalizer(backend="numpy")


def _check_method(method: str) -> None:
    if method not in FITTED:
        raise ValueError(f"unknown stain normalisation {method!r}; choose one of {METHODS}")


def _run(normalizer: Any, method: str, rgb: np.ndarray) -> np.ndarray:
    """torchstain's normalisation of an (H, W, 3) uint8 array; raises on NaN/division by zero."""
    with np.errstate(divide="raise", invalid="raise", over="ignore", under="ignore"):
        if method == "macenko":
            out = normalizer.normalize(I=rgb, stains=False)[0]
        else:
            out = normalizer.normalize(rgb)
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise ValueError(f"torchstain returned {out.dtype} {out.shape} for {rgb.shape}")
    return out


@dataclass(frozen=True)
class StainNormalizer:
    """A fitted stain normaliser: torchstain's method name and its fitted attributes.

    Callable on a PIL RGB image or a uint8 (3, H, W) tensor (also a `tv_tensors.Image` inside a
    torchvision v2 pipeline); returns the same kind. An image torchstain cannot normalise is
    returned unchanged (with one logged warning per process): one odd image must not stop
    training or prediction.
    """

    method: str
    #: torchstain attribute name -> value as (nested) lists, e.g. {"HERef": [[...], ...]}.
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse malformed parameters (e.g. a hand-edited config.json) now, rather than
        silently leaving every image unnormalised later."""
        _check_method(self.method)
        if set(self.params) != set(FITTED[self.method]):
            raise ValueError(
                f"{self.method} stain parameters must be {sorted(FITTED[self.method])}, "
                f"not {sorted(self.params)}"
            )
        for name, (_, shape) in FITTED[self.method].items():
            try:
                value = np.asarray(self.params[name], dtype=float)
            except (TypeError, ValueError):
                value = np.zeros(0)
            if value.shape != shape or not np.isfinite(value).all():
                raise ValueError(
                    f"{self.method} stain parameter {name} must be {shape} finite numbers, "
                    f"not {self.params[name]!r}"
                )

    @classmethod
    def fit(cls, image: Image.Image, method: str) -> StainNormalizer:
        """Fit `method` on a reference image; raises ValueError if torchstain cannot."""
        _check_method(method)
        ts = _torchstain(method)
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        try:
            with np.errstate(divide="raise", invalid="raise", over="ignore", under="ignore"):
                ts.fit(rgb)
        except _IMAGE_ERRORS as exc:
            raise ValueError(f"{method} stain normalisation cannot be fitted: {exc}") from exc
        params = {name: np.asarray(getattr(ts, name)).tolist() for name in FITTED[method]}
        if method == "reinhard" and min(params["target_stds"]) <= 0:
            raise ValueError("reinhard stain normalisation cannot be fitted: a flat colour channel")
        try:
            return cls(method, params)
        except ValueError as exc:  # non-finite: torchstain found no usable stain vectors
            raise ValueError(f"{method} stain normalisation cannot be fitted: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": copy.deepcopy(dict(sorted(self.params.items())))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StainNormalizer:
        return cls(str(d["method"]), copy.deepcopy(dict(d["params"])))

    @cached_property
    def _normalizer(self) -> Any:
        """torchstain's normaliser with the fitted attributes set, as its `fit` would."""
        ts = _torchstain(self.method)
        for name, (dtype, _) in FITTED[self.method].items():
            setattr(ts, name, np.asarray(self.params[name], dtype=dtype))
        return ts

    def normalize_array(self, rgb: np.ndarray) -> np.ndarray:
        """Normalise an (H, W, 3) uint8 array; the array itself if torchstain fails on it."""
        global _warned
        try:
            return _run(self._normalizer, self.method, np.ascontiguousarray(rgb))
        except _IMAGE_ERRORS as exc:
            if not _warned:
                _warned = True
                log.warning(
                    "%s stain normalisation failed on an image (%s: %s); such images are used "
                    "unnormalised (warned once)",
                    self.method,
                    type(exc).__name__,
                    exc,
                )
            return rgb

    def __call__(self, img: Any) -> Any:
        if isinstance(img, Image.Image):
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
            out = self.normalize_array(rgb)
            return img if out is rgb and img.mode == "RGB" else Image.fromarray(out, "RGB")
        torch = sys.modules.get("torch")  # a tensor means torch is loaded; never import it here
        if (
            torch is None
            or not isinstance(img, torch.Tensor)
            or img.dtype != torch.uint8
            or img.ndim != 3
        ):
            raise TypeError("StainNormalizer takes a PIL image or a uint8 (3, H, W) tensor")
        rgb = img.permute(1, 2, 0).cpu().numpy()
        out = self.normalize_array(rgb)
        if out is rgb:
            return img
        from torchvision import tv_tensors

        t = torch.from_numpy(out).permute(2, 0, 1).contiguous().to(img.device)
        return tv_tensors.wrap(t, like=img) if isinstance(img, tv_tensors.Image) else t

    def __repr__(self) -> str:
        return f"StainNormalizer(method={self.method!r})"
