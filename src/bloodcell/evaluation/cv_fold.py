"""One fold of a cross-validation (`workflows.cv_job.run_fold` runs it): its manifest and its
out-of-fold predictions, each written so that a killed process leaves either the whole file or
none, and read back for the figures (`cv_figures`).

  FOLD/manifest.csv      the fold's split (test = this fold); an existing one must match
  FOLD/run/              the fold's training run (`run_dir.RunDir`), with the shortcut audit of
                         its test part in run/eval/test/audit.json
  FOLD/predictions.csv   its out-of-fold predictions, written last: a fold with it is done

(the names are `run_dir.FoldDir`'s).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bloodcell.data.manifest import ManifestRow, select, write_manifest
from bloodcell.errors import DatasetError, ModelError
from bloodcell.labels import LABELS
from bloodcell.run_dir import FoldDir, RunDir, atomic


def write_fold_manifest(rows: list[ManifestRow], path: Path) -> None:
    """Write the fold's manifest; an existing one must be byte-identical (same data, seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        write_manifest(rows, tmp)
        if path.is_file() and path.read_bytes() != tmp.read_bytes():
            raise DatasetError(
                f"{path}: the data changed since this cross-validation started (the fold's "
                "manifest would differ); choose another --out"
            )


def fold_probs(
    run: RunDir, rows: list[ManifestRow], data_root: Path, progress: bool = True
) -> np.ndarray:
    """Class probabilities of the fold's test part from its trained (and calibrated) model."""
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.models.backends import softmax
    from bloodcell.models.saved import load_model
    from bloodcell.models.torch_backend import TorchBackend, dataset_outputs

    model = TorchBackend(load_model(run.path))
    if list(model.labels) != list(LABELS):
        raise ModelError(f"{run.path}: model labels {model.labels} differ from {list(LABELS)}")
    dataset = ManifestDataset(select(rows, "test"), data_root, model.preprocess.transform())
    outputs, _ = dataset_outputs(model, dataset, progress="predict test" if progress else None)
    return softmax(outputs.logits, model.temperature)


def write_fold_predictions(fold: FoldDir, rows: list[ManifestRow], probs: np.ndarray) -> Path:
    """The fold's predictions file, atomically: once it exists the fold is done."""
    path = fold.predictions
    with atomic(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "label", "group", "predicted", *[f"p_{lab}" for lab in LABELS]])
        for row, p in zip(select(rows, "test"), probs, strict=True):
            w.writerow(
                [row.path, row.label, row.group, LABELS[int(p.argmax())]] + [f"{v:.6f}" for v in p]
            )
    return path


def read_predictions(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Paths, true class indices and class probabilities of a fold's predictions file."""
    with path.open(newline="") as fh:
        recs = list(csv.DictReader(fh))
    if not recs:
        raise DatasetError(f"{path}: no predictions in it; delete it to redo the fold")
    paths = [r["path"] for r in recs]
    y = np.array([LABELS.index(r["label"]) for r in recs], dtype=int)
    probs = np.array([[float(r[f"p_{lab}"]) for lab in LABELS] for r in recs], dtype=float)
    return paths, y, probs
