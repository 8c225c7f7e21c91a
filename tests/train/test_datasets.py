"""Training data: corrupted copies are seeded and mixed per epoch, and the stain normaliser is
fitted once on a readable target, saved with the model and reapplied."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tests.train import tiny_config, tiny_data

from bloodcell.run_dir import LOG_FILE
from bloodcell.train.epoch_log import read_log
from bloodcell.train.job import train


def test_fast_recipe_caches_corrupted_copies_and_mixes_them(tmp_path: Path) -> None:
    """The default recipe's machinery: cached block outputs, feature-map flips and turns, and
    every epoch drawing each image from a clean or a corrupted cached copy, on a tiny model."""
    from bloodcell.train.config import recipe
    from bloodcell.train.datasets import MixedCopies

    data, manifest = tiny_data(tmp_path)
    fast = recipe("fast")
    cfg = tiny_config(
        epochs=6,
        freeze=1,
        optimizer=fast.optimizer,
        schedule=fast.schedule,
        label_smoothing=fast.label_smoothing,
        normalize="per_image",
        feature_aug=True,
        corrupt_copies=2,
    )
    seen: list[torch.Tensor] = []

    class _Copies(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
            ds = trainer.train_dataloader.dataset
            assert isinstance(ds, MixedCopies) and len(ds.copies) == 3
            if trainer.fit_loop.epoch_loop.batch_idx == 0:
                seen.append(ds.choice.clone())

    run = train(cfg, data, manifest, tmp_path / "run", callbacks=[_Copies()], progress=False)
    assert len(seen) == 6
    for choice in seen:  # every epoch mixes all three copies
        assert set(choice.tolist()) == {0, 1, 2}
    assert not torch.equal(seen[0], seen[1])  # and draws anew each epoch
    assert max(r["val_acc"] for r in read_log(run / LOG_FILE)) >= 0.5  # chance is 0.25
    saved = json.loads((run / "model/config.json").read_text())
    assert saved["preprocess"]["normalize"] == "per_image"


def test_corrupted_copies_are_seeded_and_focus_blurs_them(tmp_path: Path) -> None:
    """A corrupted copy is the same for the same seed, another for another seed, and the
    random defocus (`focus_severity`) removes fine detail on top of the other corruptions."""
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.data.manifest import read_manifest
    from bloodcell.train.datasets import corrupted_dataset

    data, manifest = tiny_data(tmp_path)
    rows = [r for r in read_manifest(manifest) if r.split == "train"]

    def copy(seed: int, focus: int) -> torch.Tensor:
        cfg = tiny_config(image_size=64, focus_severity=focus)
        ds = corrupted_dataset(ManifestDataset(rows, data, cfg.preprocess().transform()), cfg, seed)
        return torch.stack([ds[i][0] for i in range(len(ds))])

    def detail(x: torch.Tensor) -> float:  # mean size of neighbouring-pixel differences
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    plain = copy(0, focus=0)
    assert torch.equal(plain, copy(0, focus=0))
    assert not torch.equal(plain, copy(1, focus=0))
    focused = copy(0, focus=3)
    assert focused.shape == plain.shape and focused.dtype == plain.dtype
    assert detail(focused) < 0.9 * detail(plain)


def test_stain_normalisation_is_fitted_once_saved_and_reapplied(tmp_path: Path) -> None:
    """Reinhard, fitted on the first train image, reaches the cached (and corrupted) training
    inputs and the saved model; loading and evaluating apply it without the target image."""
    import bloodcell
    from bloodcell.data.decode import decode_image
    from bloodcell.data.manifest import read_manifest
    from bloodcell.data.preprocess import Preprocess
    from bloodcell.data.stain import StainNormalizer
    from bloodcell.workflows.evaluate_job import evaluate_run

    data, manifest = tiny_data(tmp_path)
    cfg = tiny_config(epochs=1, freeze=1, corrupt_copies=1, stain_norm="reinhard")
    run = train(cfg, data, manifest, tmp_path / "run", progress=False)
    first = min(r.path for r in read_manifest(manifest) if r.split == "train")
    want = StainNormalizer.fit(decode_image(data / first), "reinhard")
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["preprocess"]["stain"] == want.to_dict()
    assert saved["training"]["stain_norm"] == "reinhard"
    loaded = bloodcell.load(run)
    img = decode_image(data / first)
    plain = Preprocess(image_size=32).transform()
    assert torch.equal(loaded.preprocess.transform()(img), plain(want(img)))
    assert not torch.equal(loaded.preprocess.transform()(img), plain(img))
    m = evaluate_run(run, "val", progress=False)
    assert m["n"] == 8


def test_stain_target_must_be_a_readable_image(tmp_path: Path) -> None:
    from bloodcell.errors import DatasetError

    data, manifest = tiny_data(tmp_path, n_per_class=3)
    missing = tmp_path / "no-such-target.png"
    cfg = tiny_config(epochs=1, stain_norm="macenko", stain_target=str(missing))
    with pytest.raises(DatasetError, match="no-such-target.png"):
        train(cfg, data, manifest, tmp_path / "run", progress=False)


def test_a_corrupted_copy_is_the_same_in_any_order_and_any_thread(tmp_path: Path) -> None:
    """Image i of a corrupted copy draws from (seed, i) alone, so the threads that make the
    cached features (`compute_features`) give the features of a plain loop."""
    from torch import nn

    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.data.manifest import read_manifest
    from bloodcell.train.datasets import corrupted_dataset
    from bloodcell.train.features import compute_features

    data, manifest = tiny_data(tmp_path)
    rows = [r for r in read_manifest(manifest) if r.split == "train"]
    cfg = tiny_config(image_size=64)
    ds = corrupted_dataset(ManifestDataset(rows, data, cfg.preprocess().transform()), cfg, 5)
    forward = [ds[i][0] for i in range(len(ds))]
    backward = [ds[i][0] for i in reversed(range(len(ds)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    cached = compute_features(stem, ds, "cpu", batch_size=3, workers=0, desc="", progress=False)
    with torch.inference_mode():
        plain = stem(torch.stack(forward))
    assert torch.allclose(cached.tensors[0], plain, atol=1e-6)
    assert cached.tensors[1].tolist() == [ds[i][1] for i in range(len(ds))]
