"""A whole run: a small model learns and the run folder holds every file; an interrupted run
resumes without repeating an epoch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
from tests.train import TINY, tiny_config, tiny_data, tiny_run

from bloodcell.errors import ModelError
from bloodcell.run_dir import LOG_FILE
from bloodcell.train.epoch_log import read_log
from bloodcell.train.job import train


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


def test_a_run_at_chance_says_so_and_a_combination_that_cannot_work_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bloodcell.train.config import TrainConfig
    from bloodcell.train.job import warn_at_chance

    with caplog.at_level("ERROR"):
        assert warn_at_chance(0.33, tmp_path) is True
        assert warn_at_chance(0.9, tmp_path) is False
    assert "learnt nothing" in caplog.text and "33.0%" in caplog.text
    with pytest.raises(ValueError, match="finder finds none"):
        TrainConfig(cells_only=True, stain_norm="macenko")
