"""The saved-model directory round-trips to identical predictions and records its provenance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bloodcell.data.preprocess import Preprocess
from bloodcell.errors import ModelError
from bloodcell.models.registry import create_model
from bloodcell.models.saved import load_model, save_model, update_config


def test_round_trip_identical_predictions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", pretrained=False).eval()
    out = save_model(
        model,
        tmp_path / "m",
        "mobilenet_v2",
        Preprocess(image_size=32),
        training={"epochs": 1},
        data={"manifest_sha256": "0" * 64},
    )
    loaded = load_model(out)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x).softmax(1), loaded.predict_proba(x))
    assert loaded.preprocess.image_size == 32
    assert loaded.config["data"]["manifest_sha256"] == "0" * 64
    assert {"torch", "torchvision", "bloodcell"} <= set(loaded.config["versions"])
    update_config(out, temperature=2.0)
    assert load_model(out).temperature == 2.0


def test_not_a_model_dir_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="bloodcell train"):
        load_model(tmp_path)


def test_bloodcell_load_returns_the_backend_every_command_uses(tmp_path: Path) -> None:
    import bloodcell
    from bloodcell.models.torch_backend import TorchBackend

    model = create_model("mobilenet_v2", pretrained=False).eval()
    out = save_model(model, tmp_path / "m", "mobilenet_v2", Preprocess(image_size=32))
    backend = bloodcell.load(out)  # nothing exported: torch
    assert isinstance(backend, TorchBackend) and backend.engine == "torch"
    assert backend.config["architecture"] == "mobilenet_v2"
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        want = model(x).softmax(1).numpy()
    np.testing.assert_allclose(backend.predict_proba(x), want, atol=1e-6)


def test_saved_weights_are_readable_by_the_group_and_others(tmp_path: Path) -> None:
    """model.safetensors and ood.safetensors get the usual mode of a new file (0o644 under
    umask 022), not the 0o600 of the temporary they are written through."""
    from bloodcell.models.scope_detector import SCOPE_DETECTOR_FILE, ScopeDetector

    model = create_model("mobilenet_v2", pretrained=False).eval()
    old = os.umask(0o022)
    try:
        out = save_model(model, tmp_path / "m", "mobilenet_v2", Preprocess(image_size=32))
        detector = ScopeDetector(
            [1],
            [torch.zeros(4, 3)],
            [torch.eye(3)],
            torch.zeros(1),
            torch.ones(1),
            np.linspace(0.0, 1.0, 11),
        )
        detector.save(out)
    finally:
        os.umask(old)
    for name in ("model.safetensors", SCOPE_DETECTOR_FILE):
        assert (out / name).stat().st_mode & 0o7777 == 0o644, name
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        SCOPE_DETECTOR_FILE,
    ]
    assert load_model(out).architecture == "mobilenet_v2"
