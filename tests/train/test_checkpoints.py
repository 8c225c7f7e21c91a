"""Checkpoints: the best one is the best val epoch, last.ckpt the last epoch, the chosen one
becomes the model, and the saved model predicts like its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.train import tiny_config, tiny_run

from bloodcell.run_dir import LOG_FILE
from bloodcell.train.checkpoints import best_checkpoint, load_checkpoint_weights
from bloodcell.train.epoch_log import read_log
from bloodcell.train.features import build_model


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
    from bloodcell.models.saved import load_model

    run = tiny_run(tmp_path, epochs=3, lr=0.0, checkpoint="last")
    summary = json.loads((run / "train_summary.json").read_text())
    assert (summary["best_epoch"], summary["model_epoch"]) == (0, 2)
    assert summary["model_checkpoint"] == "last.ckpt"
    ref = build_model(tiny_config())
    load_checkpoint_weights(ref, run / "checkpoints" / "last.ckpt")
    ref.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ref(x).softmax(1), load_model(run).predict_proba(x))
    with pytest.raises(ValueError, match="checkpoint must be"):
        tiny_config(checkpoint="first")


def test_save_load_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    from bloodcell.models.saved import load_model

    run = tiny_run(tmp_path, epochs=1)
    ref = build_model(tiny_config())
    load_checkpoint_weights(ref, best_checkpoint(run))
    ref.eval()
    loaded = load_model(run)
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ref(x).softmax(1), loaded.predict_proba(x))
        assert torch.equal(loaded.predict_proba(x), load_model(run / "model").predict_proba(x))
