"""The model being trained, and where its training inputs enter it.

When the frozen front of the network sees the same input every epoch (frozen backbone or frozen
first N blocks, no augmentation), its outputs are computed once (`compute_features`) and the
trainable rest is trained on them (`forward_from`): the same computation as the plain path
(frozen BatchNorm stays in eval mode), one backbone pass per image instead of one per epoch.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bloodcell.train.config import TrainConfig

if TYPE_CHECKING:
    from bloodcell.models.registry import Classifier


def build_model(config: TrainConfig) -> Classifier:
    """The registered Classifier with the configured part of its backbone frozen."""
    from bloodcell.models.registry import create_model

    model = create_model(config.model, pretrained=config.pretrained)
    n = config.frozen_blocks(len(model.backbone))
    if n:
        model.freeze_backbone(None if n == len(model.backbone) else n)
    return model.train()  # puts the frozen blocks in eval mode: BatchNorm keeps ImageNet's stats


def cache_start(config: TrainConfig, n_blocks: int) -> str | int | None:
    """Where cached inputs enter the model: 'pooled' (head only), a block index, or None
    (images; nothing can be cached because the frozen part's input changes or nothing is frozen)."""
    n = config.frozen_blocks(n_blocks)
    if not config.feature_cache or config.augment or n == 0:
        return None
    return "pooled" if n == n_blocks else n


def frozen_stem(model: Classifier, start: str | int) -> nn.Sequential:
    """An inference copy of the frozen front of the model whose outputs are cached: its blocks
    with BatchNorm folded in (`models.fusion`: the same outputs up to rounding, faster), then
    the pooling when the whole backbone is frozen. The model itself is left as it is."""
    from bloodcell.models.fusion import fused_blocks

    n = len(model.backbone) if start == "pooled" else int(start)
    blocks = fused_blocks(model.backbone[:n])
    return nn.Sequential(blocks, model.pool) if start == "pooled" else nn.Sequential(blocks)


def stem_blocks(stem: nn.Sequential) -> nn.Sequential:
    """The backbone blocks of a `frozen_stem`, indexed as in the backbone (for forward hooks)."""
    blocks = stem[0]
    assert isinstance(blocks, nn.Sequential)
    return blocks


def forward_from(model: Classifier, x: torch.Tensor, start: str | int | None) -> torch.Tensor:
    """Logits from images (start=None) or from cached outputs of `frozen_stem(model, start)`."""
    if start == "pooled":
        return model.head(x)
    features = model.backbone(x) if start is None else model.backbone[int(start) :](x)
    return model.head(model.pool(_gradient_in_layout(features)))


def _gradient_in_layout(features: torch.Tensor) -> torch.Tensor:
    """`features`, whose gradient is brought back to their channels-last layout: the pooling's
    backward hands back a plain-layout gradient, and BatchNorm's backward given two layouts
    takes a slow path on CPU (24 ms a batch of 32 for MobileNetV2's last block, a seventh of
    a training step). The same numbers, to rounding."""
    if features.requires_grad and features.is_contiguous(memory_format=torch.channels_last):
        features.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last))
    return features


@torch.inference_mode()
def compute_features(
    stem: nn.Module,
    dataset: Dataset,
    device: str,
    batch_size: int,
    workers: int,
    desc: str,
    progress: bool = True,
    channels_last: bool = False,
) -> TensorDataset:
    """Run the frozen stem once over a dataset: (features, targets), kept on the CPU.

    Without worker processes, threads make the next batch while the stem runs on this one
    (`torch_batches`); the datasets give the same item for an index in any thread (corrupted
    copies draw from their seed and the index), so the features do not depend on the threads.
    """
    from tqdm import tqdm

    from bloodcell.models.torch_backend import torch_batches

    layout = torch.channels_last if channels_last else torch.contiguous_format
    stem = stem.to(device).to(memory_format=layout).eval()
    pin = str(device).startswith("cuda")
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin
    )
    feats, targets = [], []
    batches = loader if workers else torch_batches(dataset, batch_size, 0)
    for x, y in tqdm(
        batches, desc=desc, unit="batch", total=len(loader), file=sys.stderr, disable=not progress
    ):
        x = x.to(device).contiguous(memory_format=layout)
        feats.append(stem(x).float().cpu().contiguous())
        targets.append(torch.as_tensor(y))
    return TensorDataset(torch.cat(feats), torch.cat(targets))


def random_dihedral(x: torch.Tensor) -> torch.Tensor:
    """One random flip/90-degree turn of a batch of (N, C, H, W) feature maps."""
    k = int(torch.randint(4, (1,)))
    x = torch.rot90(x, k, dims=(-2, -1))
    return x.flip(-1) if bool(torch.randint(2, (1,))) else x
