"""The start-up path that does only what the answer needs: with an ONNX engine, `predict` and
`serve` import neither torch nor torchvision nor Lightning (nor crepes, nor SciPy and
scikit-image, whose imports alone took longer than the one-image answer now takes), and the
NumPy preprocessing gives the labels the torch transform gave."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import PURPLE_NUCLEUS, make_dataset, smear_field, synthetic_image
from tests.models import IMAGE_SIZE, export_checked_onnx, onnx_run_dir, tiny_model_dir

from bloodcell.data.cells import CellFinder
from bloodcell.data.preprocess import Preprocess
from bloodcell.models.engines import open_model
from bloodcell.models.saved import update_config
from bloodcell.predict.stream import predict_images, predict_paths

#: Modules the ONNX path must not import.
HEAVY = ("torch", "torchvision", "lightning", "pytorch_lightning", "crepes", "scipy", "skimage")


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_run_dir(tmp_path_factory.mktemp("torch-free"))


def _images(folder: Path) -> list[Path]:
    """Synthetic images of several sizes (so the resize runs), and fields with and without a
    white cell (so the guard both answers and refuses)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_dataset(folder / "data", "generic", n_per_class=2, size=IMAGE_SIZE)
    synthetic_image("pre_b", 11, size=97).save(folder / "odd.png")
    synthetic_image("pro_b", 12, size=150).resize((150, 90)).save(folder / "wide.jpg")
    smear_field(3, size=128, cells=((64, 40, 12, PURPLE_NUCLEUS),)).save(folder / "cell.png")
    smear_field(4, size=128, red_cells=8).save(folder / "none.png")
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_onnx_predict_path_imports_no_torch(onnx_run: Path, tmp_path: Path) -> None:
    """`bloodcell predict RUN IMAGE` (auto: the checked ONNX engine) in a fresh interpreter:
    the image is predicted, and torch never entered `sys.modules`."""
    image = _images(tmp_path)[0]
    code = (
        "import json, sys\n"
        "from bloodcell.cli import main\n"
        f"rc = main(['predict', {str(onnx_run)!r}, {str(image)!r}, '--format', 'jsonl'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    out = _run(code)
    status = json.loads(out.stderr.strip().splitlines()[-1])
    assert status == {"rc": 0, "heavy": []}
    row = json.loads(out.stdout.strip().splitlines()[0])
    assert row["engine"] == "onnx" and row["error"] is None and row["path"] == str(image)
    # ... and it is the answer the torch engine gives to the same file.
    torch_row = next(predict_paths(open_model(onnx_run, "torch"), [image]))[0]
    assert row["label"] == torch_row.label and row["reason"] == torch_row.reason
    for label, p in torch_row.probabilities.items():
        assert row["probabilities"][label] == pytest.approx(p, abs=1e-4)


def test_onnx_serve_path_imports_no_torch(onnx_run: Path, tmp_path: Path) -> None:
    """The app on the ONNX engine answers /health and a prediction without torch; Grad-CAM
    is still offered (torch is loaded when a heatmap is asked for)."""
    image = next(p for p in _images(tmp_path) if p.parent.name == "benign")  # in scope
    code = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from bloodcell.serve.app import create_app\n"
        f"app = create_app({str(onnx_run)!r})\n"
        "with TestClient(app) as c:\n"
        "    health = c.get('/health').json()\n"
        "    info = c.get('/v1/model').json()\n"
        f"    files = {{'files': ('x.jpg', open({str(image)!r}, 'rb').read(), 'image/jpeg')}}\n"
        "    r = c.post('/v1/predict', files=files)\n"
        f"    heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    hm = c.post('/v1/predict?explain=true', files=files).json()['results'][0]\n"
        "print(json.dumps({'health_engine': health['engine'], 'status': r.status_code,\n"
        "    'engine': r.json()['engine'], 'explain': info['explain_available'],\n"
        "    'heavy': heavy, 'heatmap': bool(hm.get('heatmap_png')) or hm['label'] is None,\n"
        "    'torch_after_heatmap': 'torch' in sys.modules}))\n"
    )
    status = json.loads(_run(code).stdout.strip().splitlines()[-1])
    assert status == {
        "health_engine": "onnx",
        "status": 200,
        "engine": "onnx",
        "explain": True,
        "heavy": [],
        "heatmap": True,
        "torch_after_heatmap": True,
    }


PREPROCESSING = {
    "imagenet": {},
    "per_image": {"normalize": "per_image"},
    "cells": {"normalize": "per_image", "cells": CellFinder().to_dict()},
}


@pytest.fixture(scope="module", params=sorted(PREPROCESSING))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model under each preprocessing, exported to ONNX. The weights were fitted to
    the first; under the others its out-of-scope detector would refuse every image, so they
    go without one (both paths must agree whatever the model answers)."""
    model_dir = tmp_path_factory.mktemp(f"pre-{request.param}") / "model"
    shutil.copytree(tiny_model_dir(), model_dir)
    pre = Preprocess(image_size=IMAGE_SIZE, **PREPROCESSING[request.param])
    update_config(model_dir, preprocess=pre.to_dict())
    if request.param != "imagenet":
        update_config(model_dir, ood=None)
    export_checked_onnx(model_dir)
    return model_dir


def _old_path(model_dir: Path, images: list[Path]) -> tuple[list[str | None], np.ndarray]:
    """Labels and probabilities as predict made them before: the torch transform
    (`Preprocess.prepare`), torch tensors, the torch engine."""
    import torch

    from bloodcell.data.decode import decode_image
    from bloodcell.predict.records import to_predictions

    backend = open_model(model_dir, "torch")
    prepared = [backend.preprocess.prepare(decode_image(p), guard=True) for p in images]
    scored = backend.score(torch.stack([x for x, _ in prepared]))
    cells = [c for _, c in prepared]
    preds = to_predictions([str(p) for p in images], scored, backend, 0.8, cells)
    return [p.label for p in preds], scored.probs


def test_torch_free_path_gives_the_old_labels(variant: Path, tmp_path: Path) -> None:
    images = _images(tmp_path)
    labels, probs = _old_path(variant, images)
    assert any(lb is not None for lb in labels)
    for engine in ("auto", "torch"):
        backend = open_model(variant, engine)
        assert backend.engine == ("onnx" if engine == "auto" else "torch")
        rows = [p for batch in predict_paths(backend, images, batch_size=3) for p in batch]
        assert [r.path for r in rows] == [str(p) for p in images]
        assert [r.label for r in rows] == labels, engine
        got = np.array([[r.probabilities[lb] for lb in backend.labels] for r in rows])
        assert np.abs(got - probs).max() <= 1e-4, engine
        decoded = [Image.open(p).convert("RGB") for p in images]
        assert [r.label for r in predict_images(backend, decoded)] == labels, engine
