"""The LightningModule: what one training or validation step computes, and the per-epoch numbers
(train/val loss and accuracy, val macro-F1) that `log.csv` and checkpoint selection use."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from bloodcell.labels import LABELS
from bloodcell.train.config import TrainConfig
from bloodcell.train.datasets import MixedCopies
from bloodcell.train.features import build_model, forward_from, random_dihedral
from bloodcell.train.optim import optimization
from bloodcell.train.outliers import exposure_loss


class BloodcellModule(pl.LightningModule):
    """A LightningModule around `registry.Classifier`: cross-entropy, Adam-style optimiser hooks,
    train loss/accuracy in the progress bar, val loss/accuracy/macro-F1 every epoch.

    `start` says where training/validation inputs enter the model (see `forward_from`);
    `forward` always takes images.
    """

    def __init__(self, config: dict[str, Any], start: str | int | None = None) -> None:
        super().__init__()
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        self.start = start
        self.model = build_model(self.config)
        if self.config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        k = len(LABELS)
        self.train_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes=k, average="macro")
        self.epoch_row: dict[str, float] = {}
        self._sums = torch.zeros(3)
        self._vsums = torch.zeros(2)
        self._epoch_t0 = time.perf_counter()
        self.samples_seen = 0  # train samples this process saw, for the summary
        self.rank_samples: list[int] = []  # samples_seen of every rank, gathered at the end
        self.val_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        dataset = self.trainer.train_dataloader.dataset if self.trainer.train_dataloader else None
        parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
        for part in parts:
            if isinstance(part, MixedCopies):
                part.set_epoch(self.current_epoch)
        self.model.train()  # Lightning keeps module modes as found; frozen blocks must stay eval
        self._sums = torch.zeros(3)  # loss sum, correct, count
        self._epoch_t0 = time.perf_counter()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """Images and feature maps in the model's memory layout (see `channels_last`)."""
        if self.config.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        if self.config.feature_aug and isinstance(self.start, int):
            x = random_dihedral(x)
        logits = forward_from(self.model, self._layout(x), self.start)
        loss = exposure_loss(logits, y, self.criterion, self.config.outlier_weight)
        known = y >= 0  # outlier images (`train.outliers`) have no class to be right about
        if bool(known.any()):
            self.train_acc(logits[known], y[known])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=True, on_epoch=True)
        n = int(known.sum())
        self.samples_seen += len(y)
        correct = (logits[known].argmax(1) == y[known]).sum()
        self._sums += torch.stack([loss.detach().float().cpu() * n, correct.cpu(), torch.tensor(n)])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._vsums = torch.zeros(2)  # loss sum, count

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = forward_from(self.model, self._layout(x), self.start)
        loss = nn.functional.cross_entropy(logits.float(), y)
        self.val_acc.update(logits, y)
        self.val_f1.update(logits, y)
        self._vsums += torch.tensor([loss.item() * len(y), len(y)])

    def _summed(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over all processes (itself when there is one): each rank sees a shard."""
        return self.trainer.strategy.reduce(t.clone().to(self.device), reduce_op="sum").cpu()

    def on_train_end(self) -> None:
        seen = self.all_gather(torch.tensor(self.samples_seen, device=self.device))
        assert isinstance(seen, torch.Tensor)
        self.rank_samples = [int(v) for v in seen.reshape(-1).cpu()]

    def on_validation_epoch_end(self) -> None:
        vsums = self._summed(self._vsums)
        self.val_count = int(vsums[1])  # images validated, over all ranks
        n_val = max(1.0, float(vsums[1]))
        loss = float(vsums[0]) / n_val
        acc = float(self.val_acc.compute())
        f1 = float(self.val_f1.compute())
        self.val_acc.reset()
        self.val_f1.reset()
        # Accuracy moves in steps of 1/n_val; the loss term is smaller than one step, so it only
        # breaks ties between epochs of equal accuracy (lower loss wins).
        score = acc - min(loss, 10.0) / (10.0 * (n_val + 1))
        # Already global (summed above; torchmetrics syncs in compute): sync_dist only keeps
        # every rank's logged value identical and silences Lightning's distributed warning.
        self.log_dict({"val_loss": loss, "val_acc": acc}, prog_bar=True, sync_dist=True)
        self.log_dict({"val_f1": f1, "val_score": score}, sync_dist=True)
        if self.trainer.sanity_checking:
            return
        tl, tc, tn = (float(v) for v in self._summed(self._sums))
        opt = self.trainer.optimizers[0] if self.trainer.optimizers else None
        self.epoch_row = {
            "epoch": self.current_epoch,
            "train_loss": tl / tn if tn else float("nan"),
            "train_acc": tc / tn if tn else float("nan"),
            "val_loss": loss,
            "val_acc": acc,
            "val_f1": f1,
            "lr": opt.param_groups[0]["lr"] if opt else float("nan"),
            "seconds": time.perf_counter() - self._epoch_t0,
        }

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return optimization(
            params, self.config, lambda: int(self.trainer.estimated_stepping_batches)
        )
