"""Model registry, pretrained weights, the saved-model format, the engines that run it
(`engines.open_model`) and the rule for when it gives no class (`refusal`).

The registry's names are loaded on first use: they import torch and torchvision, which an ONNX
engine (`models.backends`, `models.engines`) never needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bloodcell.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
