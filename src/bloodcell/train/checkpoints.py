"""The checkpoints a run keeps (the best epoch by validation, and the last one for `resume`),
and reading weights back from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from bloodcell.errors import ModelError
from bloodcell.run_dir import CHECKPOINT_DIR, LAST_CKPT


def checkpoint_callbacks(run: Path) -> list[ModelCheckpoint]:
    """The best checkpoint (by `val_score`: val accuracy, ties broken by val loss) and
    `last.ckpt`, both in `run/checkpoints/`."""
    best = ModelCheckpoint(
        dirpath=run / CHECKPOINT_DIR,
        filename="best-{epoch:02d}-{val_acc:.4f}",
        monitor="val_score",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Its own callback: Lightning's `save_last=True` rewrites last.ckpt only in epochs where
    # the best checkpoint changed, so `--resume` would go back to the best epoch.
    last = ModelCheckpoint(
        dirpath=run / CHECKPOINT_DIR,
        filename=Path(LAST_CKPT).stem,
        save_top_k=1,
        enable_version_counter=False,
    )
    return [best, last]


def best_checkpoint(run: Path) -> Path:
    """The best-by-validation checkpoint of a run (falls back to last.ckpt)."""
    best = sorted((run / CHECKPOINT_DIR).glob("best-*.ckpt"))
    if best:
        return best[-1]
    last = run / CHECKPOINT_DIR / LAST_CKPT
    if last.is_file():
        return last
    raise ModelError(
        f"{run}: no checkpoint in {run / CHECKPOINT_DIR}; the run never finished an epoch"
    )


def load_checkpoint_weights(model: nn.Module, ckpt_path: Path) -> dict[str, Any]:
    """Put a Lightning checkpoint's `model.*` weights into `model`; returns the checkpoint."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return ckpt


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint was saved after (-1 when it does not say)."""
    return int(torch.load(path, map_location="cpu", weights_only=False).get("epoch", -1))
