"""Backends: one interface over torch eager and ONNX Runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.models import IMAGE_SIZE, make_run, tiny_model_dir
from tests.predict import SCORE_TOLERANCE

from bloodcell.errors import ModelError
from bloodcell.labels import LABELS
from bloodcell.models.backends import OnnxBackend, softmax
from bloodcell.models.engines import open_model
from bloodcell.models.saved import update_config
from bloodcell.models.torch_backend import TorchBackend


def test_open_model_and_run_dir(tmp_path: Path) -> None:
    b = open_model(tiny_model_dir())
    assert isinstance(b, TorchBackend)
    assert b.labels == list(LABELS)
    assert b.preprocess.image_size == IMAGE_SIZE
    assert b.temperature == 1.0 and b.uncertain_threshold == 0.8
    run = make_run(tmp_path)
    assert open_model(run).path == run / "model"


def test_proba_sums_to_one_and_applies_temperature(tmp_path: Path) -> None:
    d = shutil.copytree(tiny_model_dir(), tmp_path / "m")
    update_config(d, temperature=2.5)
    b = open_model(d)
    x = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    logits = b.predict_logits(x)
    assert logits.shape == (3, 4)
    np.testing.assert_allclose(b.predict_proba(x), softmax(logits / 2.5), atol=1e-6)
    np.testing.assert_allclose(b.predict_proba(x, calibrated=False), softmax(logits), atol=1e-6)
    np.testing.assert_allclose(b.predict_proba(x.numpy()).sum(1), 1.0, atol=1e-5)


def test_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        open_model(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="cannot load"):
        open_model(tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="not found"):
        OnnxBackend(tmp_path / "missing.onnx")


def test_onnx_without_bloodcell_metadata(tmp_path: Path) -> None:
    from bloodcell.export.onnx import export_fp32
    from bloodcell.models.saved import load_model

    path = export_fp32(load_model(tiny_model_dir()), tmp_path / "m.onnx")
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="bloodcell metadata"):
        open_model(path)


def test_dataset_outputs_keeps_order_and_scores_every_image(tmp_path: Path) -> None:
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.data.manifest import read_manifest
    from bloodcell.models.torch_backend import dataset_outputs

    run = make_run(tmp_path)
    rows = read_manifest(run / "manifest.csv")
    b = open_model(run)
    data = Path(json.loads((run / "model" / "config.json").read_text())["data"]["data_root"])
    ds = ManifestDataset(rows, data, b.preprocess.transform())
    out, targets = dataset_outputs(b, ds, batch_size=5)
    assert targets.tolist() == [LABELS.index(r.label) for r in rows]
    assert out.logits.shape == (len(rows), 4) and out.ood_score is not None
    one = b.run(torch.stack([ds[0][0], ds[7][0]]))  # a batch of 2, not 5: sums may differ
    tol = dict(rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
    np.testing.assert_allclose(out.logits[[0, 7]], one.logits, **tol)
    np.testing.assert_allclose(out.ood_score[[0, 7]], one.ood_score, **tol)
