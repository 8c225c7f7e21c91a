"""run: `run_predict` answers alike through a model directory and its .onnx export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tests.models import tiny_model_dir

from bloodcell.predict.run import run_predict
from bloodcell.predict.stream import predict_paths


def test_onnx_gives_same_labels(backend, mixed: Path, tmp_path: Path) -> None:
    from bloodcell.export.onnx import export_onnx

    onnx_path = Path(export_onnx(tiny_model_dir(), out=tmp_path / "m.onnx")["path"])
    buf = io.StringIO()
    run_predict(onnx_path, [mixed], fmt="json", stdout=buf, progress=False)
    via_onnx = json.loads(buf.getvalue())
    assert via_onnx["model"]["backend"] == "onnx"
    via_dir = [p for b in predict_paths(backend, [mixed]) for p in b]
    assert [p["label"] for p in via_onnx["predictions"]] == [p.label for p in via_dir]
    for a, b in zip(via_onnx["predictions"], via_dir, strict=True):
        if b.ok:
            assert a["confidence"] == pytest.approx(b.confidence, abs=1e-4)
