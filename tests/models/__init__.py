"""Test helpers shared by the inference tests: a real tiny model and a run folder around it.

The model is a real `mobilenet_v2` from the registry (random weights, 64 px). Random weights
alone give the same output for every image, so its BatchNorm statistics are set from the
synthetic images and its head is fitted for a few steps: outputs then differ per image, which
parity, TTA and grouping tests need. Built once per session (a few seconds).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import torch
from tests.conftest import make_dataset, synthetic_image
from torch import nn

from bloodcell.data.manifest import ManifestRow, file_sha256, write_manifest
from bloodcell.data.preprocess import Preprocess
from bloodcell.labels import LABELS
from bloodcell.models.conformal import fit_conformal
from bloodcell.models.registry import create_model
from bloodcell.models.saved import save_model, update_config
from bloodcell.models.scope_detector import fit_detector, input_spread, tap_blocks

IMAGE_SIZE = 64


def _fit_tiny(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    with torch.no_grad():
        feats = model.pool(model.backbone(x))
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model.head(feats), y).backward()
        opt.step()


@functools.cache
def tiny_model_dir() -> Path:
    """A saved tiny model (shared, read-only: copy it before changing its config)."""
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="bloodcell-tiny-"))
    data = make_dataset(root / "data", "generic", n_per_class=6, size=IMAGE_SIZE)
    pre = Preprocess(image_size=IMAGE_SIZE)
    tf = pre.transform()
    from bloodcell.data.decode import decode_image

    paths = sorted(data.rglob("*.jpg"))
    x = torch.stack([tf(decode_image(p)) for p in paths])
    y = torch.tensor([LABELS.index(p.parent.name) for p in paths])
    model = create_model("mobilenet_v2", pretrained=False)
    _fit_tiny(model, x, y)
    model_dir = save_model(model, root / "model", "mobilenet_v2", pre)
    # The detector needs more reference images than the classifier: one Gaussian per layer.
    ref = [(lab, synthetic_image(lab, 70_000 + i, IMAGE_SIZE)) for i, lab in enumerate(LABELS * 60)]
    val = [(lab, synthetic_image(lab, 90_000 + i, IMAGE_SIZE)) for i, lab in enumerate(LABELS * 12)]
    add_scope_and_sets(model_dir, model, *_tensors(ref, tf), *_tensors(val, tf))
    return model_dir


def _tensors(images: list, tf: object) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([tf(img) for _, img in images])  # type: ignore[operator]
    return x, torch.tensor([LABELS.index(lab) for lab, _ in images])


def add_scope_and_sets(
    model_dir: Path,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
) -> None:
    """Fit the out-of-scope detector and the conformal sets as training and calibration do."""
    layers = tap_blocks(len(model.backbone))
    with torch.no_grad():
        taps = model.forward_with_taps(x, layers)[1]
        logits, taps_val = model.forward_with_taps(x_val, layers)
    detector = fit_detector(layers, taps, y, taps_val, input_spread(x_val), acceptance=0.99)
    sets = fit_conformal(logits.softmax(1).numpy(), y_val.numpy(), coverage=0.95)
    update_config(model_dir, ood=detector.save(model_dir), conformal=sets.to_config())


def make_run(tmp_path: Path, n_per_class: int = 6) -> Path:
    """A run folder like `bloodcell train` leaves: model/, manifest.csv, data recorded."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir(), run / "model")
    data = make_dataset(tmp_path / "data", "generic", n_per_class=n_per_class, size=IMAGE_SIZE)
    rows = []
    for path in sorted(data.rglob("*.jpg")):
        i = int(path.stem.rsplit("-", 1)[1])
        split = "train" if i < n_per_class // 2 else ("val" if i < n_per_class - 1 else "test")
        rel = path.relative_to(data).as_posix()
        rows.append(ManifestRow(rel, path.parent.name, split, file_sha256(path), rel))
    manifest = write_manifest(rows, run / "manifest.csv")
    update_config(run, data={"data_root": str(data), "manifest": str(manifest)})
    return run


def export_checked_onnx(model_dir: Path) -> None:
    """Write model.onnx and record it as checked for these weights, as `bloodcell export
    --check` does when it passes (the check itself is tested in tests/export), so that
    `--engine auto` takes it: a few seconds instead of the check's quantisation and passes."""
    from bloodcell.export.onnx import export_onnx
    from bloodcell.models.engines import ENGINE_FILES, ENGINES_KEY, weights_digest
    from bloodcell.models.saved import update_metrics

    export_onnx(model_dir)
    record = {"verified": True, "weights_sha256": weights_digest(model_dir)}
    update_metrics(model_dir, **{ENGINES_KEY: {"onnx": {**record, "file": ENGINE_FILES["onnx"]}}})


def onnx_run_dir(tmp_path: Path) -> Path:
    """A run folder holding the tiny model with a checked ONNX engine (what `auto` picks)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir(), run / "model")
    export_checked_onnx(run / "model")
    return run
