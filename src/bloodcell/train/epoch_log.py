"""`log.csv`, one row per finished epoch (written so a resumed run has each epoch once), and
the loss/accuracy curves drawn from it."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl

from bloodcell.run_dir import atomic

LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "lr", "seconds")


class EpochLog(pl.Callback):
    """Write one `log.csv` row per finished epoch, before the checkpoint of that epoch is saved
    (ModelCheckpoint always runs last), so a resumed run's log has every epoch exactly once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = getattr(pl_module, "epoch_row", None)  # BloodcellModule's
        if trainer.sanity_checking or not row or not trainer.is_global_zero:
            return
        append_log_row(self.path, row)


def read_log(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def append_log_row(path: Path, row: dict[str, float]) -> None:
    """Add an epoch's row, dropping rows of that epoch and later (repeated after a resume)."""
    rows = [r for r in read_log(path) if r["epoch"] < row["epoch"]] + [row]
    with atomic(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (int(r[k]) if k == "epoch" else r[k]) for k in LOG_COLUMNS})


def plot_curves(log_path: Path, out: Path) -> Path | None:
    """Loss and accuracy per epoch (train and val) as a PNG."""
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(ep, [r["val_loss"] for r in rows], "o-", label="val")
    ax1.set(title="loss (cross-entropy)", xlabel="epoch", ylabel="loss")
    ax2.plot(ep, [r["train_acc"] for r in rows], "o-", label="train")
    ax2.plot(ep, [r["val_acc"] for r in rows], "o-", label="val")
    ax2.set(title="accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def log_row(log_path: Path, epoch: int) -> dict[str, float]:
    """The log's row of `epoch` (empty when the log has none)."""
    rows = [r for r in read_log(log_path) if int(r["epoch"]) == epoch]
    return rows[-1] if rows else {}
