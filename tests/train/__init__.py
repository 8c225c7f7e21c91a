"""Helpers shared by the training tests: a tiny registered model (`tiny_cnn_test`), a
synthetic dataset with its manifest, a small config, and a comparison of two detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import make_dataset
from torch import nn

from bloodcell.data.manifest import ManifestRow, write_manifest
from bloodcell.labels import LABELS
from bloodcell.models.registry import Classifier, register_model
from bloodcell.models.scope_detector import ScopeDetector
from bloodcell.train.config import TrainConfig
from bloodcell.train.job import train

TINY = "tiny_cnn_test"


@register_model(TINY, None, "two conv blocks -> pool -> 4 (tests only)")
def _tiny() -> Classifier:
    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.GroupNorm(4, o), nn.ReLU())

    head = nn.Sequential(nn.Flatten(), nn.Linear(16, len(LABELS)))
    return Classifier(nn.Sequential(block(3, 8), block(8, 16)), nn.AdaptiveMaxPool2d(1), head)


def make_manifest(data_root: Path, out: Path, n_per_class: int) -> Path:
    """A manifest over a 'generic'-layout synthetic dataset: ~2/3 train, the rest val/test."""
    rows = []
    n_train = n_per_class * 2 // 3
    n_val = (n_per_class - n_train) // 2
    for lab in LABELS:
        for i in range(n_per_class):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            rows.append(ManifestRow(f"{lab}/{lab}-{i:03d}.jpg", lab, split, "-", f"{lab}{i}"))
    return write_manifest(rows, out)


def tiny_data(tmp: Path, n_per_class: int = 12) -> tuple[Path, Path]:
    root = make_dataset(tmp / "data", "generic", n_per_class=n_per_class, size=32)
    return root, make_manifest(root, tmp / "manifest.csv", n_per_class)


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        model=TINY,
        pretrained=False,
        epochs=3,
        lr=1e-2,
        batch_size=8,
        image_size=32,
        freeze="finetune",
        workers=0,
    )
    return TrainConfig(**(base | kw))


def tiny_run(tmp: Path, **kw) -> Path:
    data, manifest = tiny_data(tmp)
    return train(tiny_config(**kw), data, manifest, tmp / "run", progress=False)


def assert_same_detector(a: ScopeDetector | None, b: ScopeDetector | None) -> None:
    assert a is not None and b is not None and a.layers == b.layers
    for x, y in [(a.centers, b.centers), (a.scales, b.scales), *zip(a.means, b.means, strict=True)]:
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.val_scores, b.val_scores, rtol=1e-3, atol=1e-3)
    assert a.threshold == pytest.approx(b.threshold, rel=1e-3, abs=1e-3)
