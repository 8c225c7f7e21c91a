"""How well the out-of-scope detector tells other images from the smears it knows.

`bloodcell evaluate RUN --ood DIR [DIR ...]` scores every image of each folder (unreadable
files are reported and skipped, as in `predict`) and the run's in-scope test split, then gives
per folder: the share refused (by any of `models.refusal`'s reasons, as `predict` refuses, and
per reason), the labels given to the rest (a normal white cell called malignant is the worst
answer), the AUROC of the detector's score against "in scope", and the false-positive rate on
the test split at 95% true-positive rate on the folder (`metrics.scope_separation`; the folder
is the positive class). For a folder the model trained on as outliers (`train.outliers`), the
same over the files training held back. `scope_folders_result` returns what
`RUN/eval/ood/ood.json` holds; `workflows.evaluate_job.evaluate_scope_folders` writes it with a
score histogram (`ood_scores.png`) and an "Out-of-scope folders" section in the split's
`report.md` (`reporting.scope_report`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bloodcell.data.batches import made_ahead
from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.errors import BloodcellError, ModelError
from bloodcell.evaluation.metrics import scope_separation
from bloodcell.evaluation.runs import Split, open_run
from bloodcell.labels import MALIGNANT
from bloodcell.models.backends import Backend
from bloodcell.models.refusal import refusals
from bloodcell.models.torch_backend import dataset_outputs
from bloodcell.records import FolderResult, ScopeFoldersResult
from bloodcell.run_dir import RunDir
from bloodcell.train.outliers import held_out

if TYPE_CHECKING:
    from bloodcell.data.cells import Cells

log = logging.getLogger(__name__)


@dataclass
class FolderAnswers:
    """What the model said about every readable image of a folder, in walk order."""

    paths: list[Path] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def folder_answers(backend: Backend, folder: Path, batch_size: int = 32) -> FolderAnswers:
    """Every readable image under `folder` (walked as `predict` walks it: sorted, hidden names
    skipped) answered as `predict` answers it: detector score, refusal reason (None when a
    class is given) and top class; and the unreadable files."""
    out = FolderAnswers()

    def prepare(path: Path) -> tuple[Path, np.ndarray, Cells | None] | str:
        try:
            x, cells = backend.preprocess.prepare_array(read_image(path), guard=True)
        except BloodcellError as exc:
            return f"{path}: {exc}"
        return path, x, cells

    for made in made_ahead(prepare, iter_image_paths([folder]), batch_size):
        out.errors += [m for m in made if isinstance(m, str)]
        batch = [m for m in made if not isinstance(m, str)]
        if batch:
            _answer(backend, batch, out)
    return out


def _answer(
    backend: Backend, batch: list[tuple[Path, np.ndarray, Cells | None]], out: FolderAnswers
) -> None:
    scored = backend.score(np.stack([x for _, x, _ in batch]))
    assert scored.ood_score is not None  # scope_folders_result refuses a model without a detector
    why = refusals(backend, scored, [cells for _, _, cells in batch])
    for j, (path, _, _) in enumerate(batch):
        out.paths.append(path)
        out.scores.append(round(float(scored.ood_score[j]), 6))  # as `predict` reports them
        out.reasons.append(why[j].reason)
        out.labels.append(backend.labels[int(np.argmax(scored.probs[j]))])


def scope_folders_result(
    model: str | Path,
    folders: Sequence[str | Path],
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    progress: bool = True,
    engine: str | None = None,
) -> tuple[ScopeFoldersResult, RunDir]:
    """Score the in-scope split and each folder (on `engine`); returns the result and the run
    it belongs to (whose folders the outputs go in by default)."""
    opened = open_run(model, engine, data_root, manifest)
    backend, run = opened.backend, opened.folder
    if backend.ood_threshold is None:
        raise ModelError(f"{model}: this model has no out-of-scope detector; retrain it")
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise BloodcellError(f"--ood: not a folder: {', '.join(missing)}")
    in_scope = split_scores(backend, opened.split(split), progress)
    results = [folder_result(backend, Path(f), in_scope, progress) for f in folders]
    result: ScopeFoldersResult = {
        "model": str(backend.path),
        "backend": backend.engine,
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
    """One folder: how many images it has, how many were refused and why, the labels the rest
    got, the same over the files outlier training held back when it trained on the folder,
    and how well the detector's score separates them from the in-scope split."""
    if progress:
        log.info("scoring %s", folder)
    got = folder_answers(backend, folder)
    scores = np.asarray(got.scores, np.float64)
    n = len(got.paths)
    refused = sum(r is not None for r in got.reasons)
    result: FolderResult = {
        "folder": str(folder),
        "n": n,
        "unreadable": got.errors,
        "flagged": refused,
        "flagged_rate": refused / n if n else None,
        "reasons": dict(Counter(r for r in got.reasons if r is not None)),
        "answered_labels": dict(
            Counter(lab for lab, r in zip(got.labels, got.reasons, strict=True) if r is None)
        ),
        **scope_separation(in_scope, scores),
        "scores": got.scores,
    }
    trained = trained_outliers(backend, folder)
    if trained is not None:
        kept = [j for j, p in enumerate(got.paths) if held_out(p, trained)]
        k = sum(got.reasons[j] is not None for j in kept)
        result["held_out"] = {
            "n": len(kept),
            "flagged": k,
            "flagged_rate": k / len(kept) if kept else None,
        }
    return result


def trained_outliers(backend: Backend, folder: Path) -> float | None:
    """The share of `folder`'s files that outlier training used (`train.outliers`), when the
    model trained on it or on a folder inside it or around it; None when it did not."""
    record = ((backend.config or {}).get("cell_gate") or {}).get("outliers") or {}
    here = folder.resolve()
    for trained in record.get("folders", []):
        t = Path(trained)
        if here == t or t in here.parents or here in t.parents:
            return float(record["share"])
    return None


def summary_lines(result: ScopeFoldersResult) -> list[str]:
    """What the CLI prints: one line per folder."""
    lines = []
    for r in result["folders"]:
        rate = "n/a" if r["flagged_rate"] is None else f"{r['flagged_rate']:.1%}"
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.4f}"
        kept = r.get("held_out")
        unseen = (
            f"; files training held back: {kept['flagged']}/{kept['n']} refused"
            if kept and kept["n"]
            else ""
        )
        lines.append(
            f"{r['folder']}: {r['flagged']}/{r['n']} refused ({rate}), called malignant "
            f"{malignant_share(r):.1%}, detector AUROC {auroc}{unseen}"
            + (f", {len(r['unreadable'])} unreadable" if r["unreadable"] else "")
        )
    return lines


def malignant_share(r: FolderResult) -> float:
    """Share of a folder's images given a malignant class."""
    given = r.get("answered_labels") or {}
    return sum(k for lab, k in given.items() if lab in MALIGNANT) / r["n"] if r["n"] else 0.0
