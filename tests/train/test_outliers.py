"""Outlier exposure: which files train and which are held back, the loss, and a tiny run that
learns to give a cell type it was shown as an outlier no class, through `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.train import tiny_config, tiny_data

from bloodcell.models.cell_gate import top_probability
from bloodcell.models.engines import open_model
from bloodcell.models.refusal import OTHER_CELL_REASON
from bloodcell.predict import predict_paths
from bloodcell.train.job import train
from bloodcell.train.outliers import OUTLIER, exposure_loss, held_out, outlier_files


def other_cells(folder: Path, n: int, seed: int = 0) -> Path:
    """A synthetic "other cell type": striped images unlike every class's pictures."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stripes = np.zeros((32, 32, 3), np.uint8)
        period = int(rng.integers(3, 6))
        stripes[:, (np.arange(32) // period) % 2 == 0] = (40, 200, 60)
        stripes[:, (np.arange(32) // period) % 2 == 1] = (250, 250, 250)
        noisy = stripes.astype(int) + rng.integers(-10, 11, stripes.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"o-{i:03d}.png")
    (folder / "README.md").write_text("not an image: left out of the outliers\n")
    return folder


def test_held_out_files_depend_on_the_name_alone(tmp_path: Path) -> None:
    names = [f"cell-{i:04d}.jpg" for i in range(2000)]
    kept = [n for n in names if held_out(n, 0.7)]
    assert 0.25 < len(kept) / len(names) < 0.35
    assert [n for n in names if held_out(Path("elsewhere") / n, 0.7)] == kept
    assert not any(held_out(n, 1.0) for n in names)
    folder = other_cells(tmp_path / "o", 30)
    trained, back = outlier_files([folder], 0.7)
    assert len(trained) + len(back) == 30  # README.md is not an image
    assert not set(trained) & set(back) and trained == sorted(trained)


def test_exposure_loss_is_cross_entropy_plus_distance_from_uniform() -> None:
    criterion = torch.nn.CrossEntropyLoss()
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    y = torch.tensor([0, 1])
    assert exposure_loss(logits, y, criterion, 0.5) == pytest.approx(criterion(logits, y).item())
    even = torch.zeros(1, 4)
    sure = torch.tensor([[9.0, 0.0, 0.0, 0.0]])
    out = torch.tensor([OUTLIER])
    # Cross-entropy from uniform: log(4) at its smallest, for an even belief.
    assert exposure_loss(even, out, criterion, 1.0).item() == pytest.approx(np.log(4), abs=1e-6)
    assert exposure_loss(sure, out, criterion, 1.0).item() > 5
    both = exposure_loss(torch.cat([logits, sure]), torch.cat([y, out]), criterion, 0.5)
    expected = criterion(logits, y) + 0.5 * exposure_loss(sure, out, criterion, 1.0)
    assert both.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("cached", [False, True], ids=["images", "cached-features"])
def test_a_tiny_run_learns_to_refuse_the_outlier_type(tmp_path: Path, cached: bool) -> None:
    data, manifest = tiny_data(tmp_path, n_per_class=12)
    outliers = other_cells(tmp_path / "outliers", 40)
    settings = {"freeze": 1, "corrupt_copies": 1, "epochs": 8} if cached else {"epochs": 8}
    config = tiny_config(
        outliers=(str(outliers),), outlier_weight=1.0, ood_acceptance=None, **settings
    )
    run = train(config, data, manifest, tmp_path / "run", progress=False)
    record = json.loads((run / "model" / "config.json").read_text())["cell_gate"]
    assert record["outliers"]["trained"] + record["outliers"]["held_out"] == 40
    assert 0.0 < record["threshold"] < 1.0
    backend = open_model(run, "torch")
    unseen = sorted(p for p in outliers.glob("*.png") if held_out(p, config.outlier_share))
    classes = sorted(data.rglob("*.jpg"))
    rows = [
        r for batch in predict_paths(backend, unseen + classes, cell_guard=False) for r in batch
    ]
    refused = [r.reason == OTHER_CELL_REASON for r in rows]
    assert np.mean(refused[: len(unseen)]) >= 0.8  # the outlier type, files training never saw
    assert np.mean(refused[len(unseen) :]) <= 0.2
    for r in rows[: len(unseen)]:
        if r.reason == OTHER_CELL_REASON:
            assert r.label is None and r.out_of_scope is True and "none of the four" in r.note
    # The score the gate reads is the one every engine computes from its logits.
    x = torch.stack([backend.preprocess.transform()(Image.open(unseen[0]).convert("RGB"))])
    top = backend.score(x.numpy()).top
    assert top is not None
    assert top == pytest.approx(top_probability(backend.run(x.numpy()).logits))
