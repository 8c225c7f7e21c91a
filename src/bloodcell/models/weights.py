"""ImageNet weights through torchvision's weights API, with an offline path for air-gapped labs.

torchvision names each weights file after the first hex digits of its sha256
(`mobilenet_v2-b0353104.pth`), and loads it from `$TORCH_HOME/hub/checkpoints/` without any
network access once it is there. `import_weights` checks a local file against that published
hash and copies it into the cache.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from bloodcell.data.manifest import file_sha256
from bloodcell.errors import WeightsError

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def cache_dir() -> Path:
    """torch's hub checkpoint folder (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_name(weights: WeightsEnum) -> str:
    return Path(urlparse(weights.url).path).name


def published_hash_prefix(weights: WeightsEnum) -> str:
    """The sha256 prefix torchvision publishes in the weights file name."""
    match = _HASH_IN_NAME.search(file_name(weights))
    if not match:
        raise ValueError(f"no hash in weights file name {file_name(weights)}")
    return match.group(1)


def load_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The weights' state dict from torch's cache, downloading it if the network allows.

    Raises WeightsError naming the file, its published hash and how to supply it offline.
    """
    name = file_name(weights)
    target = cache_dir() / name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, RuntimeError(hash), OSError alike
        raise WeightsError(
            f"ImageNet weights file {name} (sha256 starts {published_hash_prefix(weights)}) is not "
            f"in torch's cache {target} and could not be downloaded from {weights.url} "
            f"({type(exc).__name__}: {exc}). Copy the file onto this machine and run "
            f"`bloodcell weights import {name}`, or pass --no-pretrained to start from random "
            "weights."
        ) from exc


def import_weights(path: str | Path, candidates: list[WeightsEnum]) -> Path:
    """Check a local weights file against torchvision's published hashes and cache it.

    Returns the cached path. Raises WeightsError when the file matches none of `candidates`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    digest = file_sha256(path)
    for weights in candidates:
        if digest.startswith(published_hash_prefix(weights)):
            target = cache_dir() / file_name(weights)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.resolve() != path.resolve():
                shutil.copyfile(path, target)
            return target
    known = ", ".join(f"{file_name(w)}" for w in candidates)
    raise WeightsError(
        f"{path}: sha256 {digest[:12]}... matches none of the known ImageNet weights files "
        f"({known}); check that the file is complete and is torchvision's original"
    )
