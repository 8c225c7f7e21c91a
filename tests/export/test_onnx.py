"""ONNX export: metadata, dynamic batch, fp32 parity with torch, int8 (static and dynamic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tests.models import IMAGE_SIZE, make_run, tiny_model_dir

from bloodcell.errors import ModelError
from bloodcell.export.onnx import export_onnx
from bloodcell.labels import DISPLAY_NAMES, LABELS
from bloodcell.models.backends import META_KEYS, OnnxBackend
from bloodcell.models.engines import open_model
from bloodcell.models.saved import update_config

BLOODCELL = Path(sys.executable).with_name("bloodcell")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("export"))
    update_config(run, temperature=1.7, uncertain_threshold=0.75)
    return run


def test_fp32_metadata_and_parity(run: Path) -> None:
    s = export_onnx(run)
    path = Path(s["path"])
    assert path == run / "model" / "model.onnx"
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert set(meta) == set(META_KEYS)
    assert meta["labels"] == list(LABELS) and meta["display_names"] == DISPLAY_NAMES
    assert meta["preprocess"]["image_size"] == IMAGE_SIZE
    assert meta["temperature"] == 1.7 and meta["uncertain_threshold"] == 0.75
    assert meta["quantization"] is None
    ort, ref = open_model(path), open_model(run)
    assert isinstance(ort, OnnxBackend) and ort.temperature == 1.7
    torch.manual_seed(1)
    for n in (1, 7):  # dynamic batch
        x = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE)
        np.testing.assert_allclose(ort.predict_proba(x), ref.predict_proba(x), atol=1e-4, rtol=0)


def test_int8_static_with_data(run: Path, tmp_path: Path) -> None:
    s = export_onnx(run, out=tmp_path / "q.onnx", quantize="int8")
    assert s["quantization"]["method"] == "static"
    assert s["quantization"]["calibration_images"] == 12  # the train split: 3 per class
    # The out-of-scope detector's precision matrices stay float: int8 shrinks only the network.
    assert s["int8_bytes"] < s["fp32_bytes"]
    ops = {n.op_type for n in onnx.load(s["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    acc = s["accuracy"]
    assert acc["split"] == "test" and acc["n"] == 4
    assert acc["accuracy_change"] == pytest.approx(acc["accuracy_int8"] - acc["accuracy_fp32"])
    q = open_model(s["path"])
    assert q.quantization["method"] == "static" and q.labels == list(LABELS)


def test_int8_dynamic_without_data(tmp_path: Path) -> None:
    s = export_onnx(tiny_model_dir(), out=tmp_path / "d.onnx", quantize="int8")
    assert s["quantization"] == {"dtype": "int8", "method": "dynamic"}
    assert "accuracy" not in s
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert open_model(s["path"]).predict_proba(x).shape == (2, 4)


def test_refuses_onnx_input(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="already an ONNX"):
        export_onnx(tmp_path / "m.onnx")


def test_cli_export(run: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BLOODCELL), "export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and (tmp_path / "m.onnx").is_file()


def test_onnx_flags_the_same_images_as_torch(run: Path) -> None:
    from PIL import Image
    from tests.conftest import synthetic_image

    path = Path(export_onnx(run)["path"])
    ort, ref = open_model(path), open_model(run)
    assert ort.ood_threshold == pytest.approx(ref.ood_threshold)
    assert ort.conformal is not None and ort.conformal.coverage == ref.conformal.coverage
    rng = np.random.default_rng(0)
    images = [synthetic_image(lab, 60_000 + i, IMAGE_SIZE) for i, lab in enumerate(LABELS * 3)]
    images += [
        Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)),
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255)),
    ]
    tf = ref.preprocess.transform()
    x = torch.stack([tf(im) for im in images])
    a, b = ref.score(x), ort.score(x)
    np.testing.assert_allclose(a.ood_score, b.ood_score, rtol=1e-3, atol=1e-3)
    assert np.array_equal(ref.out_of_scope(a.ood_score), ort.out_of_scope(b.ood_score))
    assert ref.out_of_scope(a.ood_score)[-2:].all()  # noise and a flat image
    assert np.array_equal(ref.conformal.sets(a.probs), ort.conformal.sets(b.probs))
