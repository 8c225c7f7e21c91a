"""The LightningModule: channels-last is a memory layout only."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from tests.train import tiny_config, tiny_data
from torch import nn

from bloodcell.train.job import train


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
