"""Models registered by name, timm style: `create_model("mobilenet_v2", pretrained=True)`.

Every model is a `Classifier`: an ImageNet `backbone` (convolutional features), global pooling
and a small `head`. Keeping that shape common lets training freeze the backbone, Grad-CAM find
its last convolution (`cam_layer`), and export treat every model alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from bloodcell.labels import LABELS
from bloodcell.models.weights import load_state_dict


class Classifier(nn.Module):
    """backbone -> pooling -> head, with the hooks training and explanation need."""

    def __init__(self, backbone: nn.Sequential, pool: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.head = head

    @property
    def cam_layer(self) -> nn.Module:
        """The last block of the backbone: where Grad-CAM looks."""
        return self.backbone[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.backbone(x)))

    def forward_with_taps(
        self, x: torch.Tensor, taps: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits, and the spatial mean of the backbone's output after each block in `taps`:
        what the out-of-scope detector compares with the training images, from shallow
        (texture, colour) to deep (what the classes look like), in one pass."""
        pooled = []
        h = x
        for i, block in enumerate(self.backbone):
            h = block(h)
            if i in taps:
                pooled.append(h.mean(dim=(2, 3)))
        return self.head(self.pool(h)), pooled

    def freeze_backbone(self, blocks: int | None = None) -> None:
        """Freeze the whole backbone (blocks=None) or only its first `blocks` blocks.

        Frozen blocks are also put in eval mode by `train()` so BatchNorm statistics stay
        ImageNet's, as in Keras's `trainable = False`.
        """
        frozen = self.backbone if blocks is None else self.backbone[:blocks]
        for p in frozen.parameters():
            p.requires_grad_(False)
        # Not registered as a submodule: it would duplicate the backbone's keys in state_dict.
        self.__dict__["_frozen"] = frozen

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        frozen = getattr(self, "_frozen", None)
        if mode and frozen is not None:
            frozen.eval()
        return self


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and which ImageNet weights it starts from."""

    name: str
    build: Callable[[], Classifier]
    weights: WeightsEnum | None
    description: str
    #: Maps torchvision state-dict keys onto the Classifier's backbone keys.
    backbone_prefix: str = "features."


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, weights: WeightsEnum | None, description: str, backbone_prefix: str = "features."
) -> Callable[[Callable[[], Classifier]], Callable[[], Classifier]]:
    """Decorator: register a builder that returns a randomly initialised Classifier."""

    def wrap(build: Callable[[], Classifier]) -> Callable[[], Classifier]:
        _REGISTRY[name] = ModelSpec(name, build, weights, description, backbone_prefix)
        return build

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None


def create_model(name: str, pretrained: bool = True) -> Classifier:
    """Build a registered model; with `pretrained`, load its ImageNet backbone weights."""
    spec = get_spec(name)
    model = spec.build()
    if pretrained and spec.weights is not None:
        state = load_state_dict(spec.weights)
        prefix = spec.backbone_prefix
        backbone_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model.backbone.load_state_dict(backbone_state)
    return model


def known_weights() -> list[WeightsEnum]:
    """Every ImageNet weights file a registered model can use (for `bloodcell weights import`)."""
    return [s.weights for s in _REGISTRY.values() if s.weights is not None]


def _dense_head(in_features: int, widths: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, len(LABELS)))
    return nn.Sequential(*layers)


@register_model(
    "mobilenet_v2",
    tvm.MobileNet_V2_Weights.IMAGENET1K_V1,
    "MobileNetV2 (ImageNet) -> global average pool -> Dense 512 + ReLU -> 4 (the reference head)",
)
def mobilenet_v2() -> Classifier:
    backbone = tvm.mobilenet_v2(weights=None).features
    return Classifier(backbone, nn.AdaptiveAvgPool2d(1), _dense_head(1280, (512,)))


@register_model(
    "vgg19",
    tvm.VGG19_Weights.IMAGENET1K_V1,
    "VGG19 (ImageNet) -> flatten 7x7x512 -> 3 x (Dense 512 + ReLU) -> 4 (the reference head)",
)
def vgg19() -> Classifier:
    backbone = tvm.vgg19(weights=None).features
    return Classifier(backbone, nn.AdaptiveAvgPool2d(7), _dense_head(512 * 7 * 7, (512, 512, 512)))
