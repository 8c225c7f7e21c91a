"""Cached loaders record what the out-of-scope detector needs while caching."""

from __future__ import annotations

import json
from pathlib import Path

from tests.train import assert_same_detector, tiny_config, tiny_data

from bloodcell.models.engines import open_model
from bloodcell.train.job import train


def test_frozen_backbone_detector_is_recorded_while_caching(tmp_path: Path) -> None:
    """With the whole backbone frozen every tap is recorded during caching: no second pass."""
    data, manifest = tiny_data(tmp_path)
    runs = []
    for cache in (True, False):
        cfg = tiny_config(epochs=1, freeze="frozen", feature_cache=cache, device="cpu")
        runs.append(train(cfg, data, manifest, tmp_path / f"run{cache}", progress=False))
    assert json.loads((runs[0] / "train_summary.json").read_text())["feature_cache"] == "pooled"
    assert_same_detector(open_model(runs[0]).scope_detector, open_model(runs[1]).scope_detector)
