"""How well the out-of-scope detector tells other images from the smears it knows.

`bloodcell evaluate RUN --ood DIR [DIR ...]` scores every image of each folder (unreadable
files are reported and skipped, as in `predict`) and the run's in-scope test split, then gives
per folder: the share refused, the AUROC of score against "in scope", and the false-positive
rate on the test split at 95% true-positive rate on the folder (`metrics.ood_separation`; the
folder is the positive class). `ood_result` returns what `RUN/eval/ood/ood.json` holds;
`workflows.evaluate.evaluate_ood` writes it with a score histogram (`ood_scores.png`) and an
"Out-of-scope folders" section in the split's `report.md` (`reporting.scope_report`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.errors import BloodcellError, ModelError
from bloodcell.evaluation.metrics import ood_separation
from bloodcell.evaluation.runs import Split, open_run
from bloodcell.models.backends import Backend
from bloodcell.models.torch_backend import dataset_outputs
from bloodcell.records import FolderResult, OodResult
from bloodcell.run_dir import RunDir

log = logging.getLogger(__name__)


def folder_scores(
    backend: Backend, folder: Path, batch_size: int = 32
) -> tuple[np.ndarray, list[str]]:
    """Out-of-scope scores of every readable image under `folder` (walked as `predict` walks
    it: sorted, hidden names skipped), and the unreadable files."""
    scores: list[np.ndarray] = []
    errors: list[str] = []
    batch: list[np.ndarray] = []
    for path in iter_image_paths([folder]):
        try:
            image = read_image(path)
        except BloodcellError as exc:
            errors.append(f"{path}: {exc}")
            continue
        batch.append(backend.preprocess.prepare_array(image, guard=False)[0])
        if len(batch) == batch_size:
            scores.append(_ood_scores(backend, batch))
            batch = []
    if batch:
        scores.append(_ood_scores(backend, batch))
    return (np.concatenate(scores) if scores else np.empty(0, np.float64)), errors


def _ood_scores(backend: Backend, batch: list[np.ndarray]) -> np.ndarray:
    scores = backend.score(np.stack(batch)).ood_score
    assert scores is not None  # ood_result refuses a model without a detector
    return np.array([round(float(x), 6) for x in scores])  # as `predict` reports them


def ood_result(
    model: str | Path,
    folders: Sequence[str | Path],
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    progress: bool = True,
) -> tuple[OodResult, RunDir]:
    """Score the in-scope split and each folder; returns the result and the run it belongs to
    (whose folders the outputs go in by default)."""
    opened = open_run(model, data_root=data_root, manifest=manifest)
    backend, run = opened.backend, opened.folder
    if backend.ood_threshold is None:
        raise ModelError(f"{model}: this model has no out-of-scope detector; retrain it")
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise BloodcellError(f"--ood: not a folder: {', '.join(missing)}")
    in_scope = split_scores(backend, opened.split(split), progress)
    results = [folder_result(backend, Path(f), in_scope, progress) for f in folders]
    result: OodResult = {
        "model": str(backend.path),
        "backend": backend.kind,
        "threshold": backend.ood_threshold,
        "split": split,
        "in_scope": {
            "n": int(len(in_scope)),
            "flagged": int((in_scope > backend.ood_threshold).sum()),
            "scores": [round(float(s), 6) for s in in_scope],
        },
        "folders": results,
    }
    return result, run


def split_scores(backend: Backend, split: Split, progress: bool) -> np.ndarray:
    """Out-of-scope scores of the in-scope images of one split of the run's data."""
    from bloodcell.data.dataset import ManifestDataset

    dataset = ManifestDataset(split.rows, split.root, backend.preprocess.transform())
    name = f"scores {split.name}" if progress else None
    in_scope = dataset_outputs(backend, dataset, progress=name)[0].ood_score
    assert in_scope is not None
    return in_scope


def folder_result(
    backend: Backend, folder: Path, in_scope: np.ndarray, progress: bool
) -> FolderResult:
    """One folder: how many images it has, how many were refused, and how well the score
    separates them from the in-scope split."""
    if progress:
        log.info("scoring %s", folder)
    scores, errors = folder_scores(backend, folder)
    flagged = backend.out_of_scope(scores)
    return {
        "folder": str(folder),
        "n": int(len(scores)),
        "unreadable": errors,
        "flagged": int(flagged.sum()) if flagged is not None else 0,
        "flagged_rate": float(flagged.mean()) if flagged is not None and len(scores) else None,
        **ood_separation(in_scope, scores),
        "scores": [round(float(s), 6) for s in scores],
    }


def summary_lines(result: OodResult) -> list[str]:
    """What the CLI prints: one line per folder."""
    lines = []
    for r in result["folders"]:
        rate = "n/a" if r["flagged_rate"] is None else f"{r['flagged_rate']:.1%}"
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.4f}"
        lines.append(
            f"{r['folder']}: {r['flagged']}/{r['n']} refused ({rate}), AUROC {auroc}"
            + (f", {len(r['unreadable'])} unreadable" if r["unreadable"] else "")
        )
    return lines
