"""Grad-CAM: heatmap and overlay at the input image's size; torch models only; the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_image
from tests.models import tiny_model_dir

from bloodcell.errors import ModelError
from bloodcell.evaluation.gradcam import explain_image, render_figure

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def test_heatmap_has_input_size() -> None:
    img = synthetic_image("pre_b", seed=3, size=96).resize((120, 90))  # not the model's 64x64
    e = explain_image(tiny_model_dir(), img)
    assert e.heatmap.shape == (90, 120) and e.heatmap.dtype == np.float32
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0 and e.heatmap.max() > 0
    assert e.overlay.size == img.size and e.overlay.mode == "RGB"
    assert e.label == e.target and e.confidence == max(e.probabilities.values())
    assert e.display_name in e.title and "%" in e.title
    png = e.overlay_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    other = next(lb for lb in e.probabilities if lb != e.label)
    assert explain_image(tiny_model_dir(), img, target=other).target == other
    fig = render_figure(img, e)
    assert fig.width > img.width


def test_onnx_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Grad-CAM needs the torch model"):
        explain_image(tmp_path / "model.onnx", Image.new("RGB", (10, 10)))


def test_cli_explain(tmp_path: Path) -> None:
    for i in range(2):
        synthetic_image("benign", seed=i, size=80).save(tmp_path / f"cell{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"")
    out = subprocess.run(
        [
            str(BLOODCELL),
            "explain",
            str(tiny_model_dir()),
            str(tmp_path / "cell0.png"),
            str(tmp_path / "cell1.png"),
            str(tmp_path / "broken.jpg"),
            "--out",
            str(tmp_path / "cam"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 1, out.stderr  # one input was bad; the others were still written
    assert "broken.jpg: error: empty file" in out.stdout
    pngs = sorted((tmp_path / "cam").glob("*.png"))
    assert [p.name for p in pngs] == ["cell0-gradcam.png", "cell1-gradcam.png"]
    assert Image.open(pngs[0]).format == "PNG"
