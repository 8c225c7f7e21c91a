"""How well the out-of-scope detector tells other images from the smears it knows.

`bloodcell evaluate RUN --ood DIR [DIR ...]` scores every image of each folder (unreadable
files are reported and skipped, as in `predict`) and the run's in-scope test split, then gives
per folder: the share refused, the AUROC of score against "in scope", and the false-positive
rate on the test split at 95% true-positive rate on the folder (`metrics.ood_separation`; the
folder is the positive class). Writes `RUN/eval/ood/ood.json`, a score histogram
(`ood_scores.png`) and an "Out-of-scope folders" section in the split's `report.md`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.errors import BloodcellError, ModelError
from bloodcell.evaluation.metrics import ood_separation
from bloodcell.evaluation.runs import Split, open_run
from bloodcell.models.backends import Backend, dataset_outputs
from bloodcell.models.saved import write_json
from bloodcell.records import FolderResult, OodResult
from bloodcell.run_dir import OOD_JSON, OOD_PNG, RunDir

SECTION_TITLE = "Out-of-scope folders"


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
    assert scores is not None  # evaluate_ood refuses a model without a detector
    return np.array([round(float(x), 6) for x in scores])  # as `predict` reports them


def evaluate_ood(
    model: str | Path,
    folders: Sequence[str | Path],
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> OodResult:
    """Score the in-scope split and each folder; write JSON, histogram and report section."""
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
    out = Path(out_dir) if out_dir else run.ood_dir
    write_outputs(result, out, run, split, beside_run=out_dir is None)
    result["out_dir"] = str(out)
    return result


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
        print(f"scoring {folder}", file=sys.stderr, flush=True)
    scores, errors = folder_scores(backend, folder)
    flagged = backend.out_of_scope(scores)
    return {
        "folder": str(folder),
        "n": int(len(scores)),
        "unreadable": errors,
        "flagged": int(flagged.sum()) if flagged is not None else 0,
        "flagged_rate": float(flagged.mean()) if len(scores) else None,
        **ood_separation(in_scope, scores),
        "scores": [round(float(s), 6) for s in scores],
    }


def write_outputs(result: OodResult, out: Path, run: RunDir, split: str, beside_run: bool) -> None:
    """ood.json, the histogram, and the section in the split's report.md, which links the
    histogram relative to itself when it is in the run (so the run can move), else absolutely."""
    from bloodcell.reporting.markdown import upsert_section
    from bloodcell.reporting.plots import plot_ood_scores

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / OOD_JSON, result)
    plot_ood_scores(result, out / OOD_PNG)
    report = run.eval_report(split)
    report.parent.mkdir(parents=True, exist_ok=True)
    image = run.link(run.ood_png, report.parent) if beside_run else str((out / OOD_PNG).resolve())
    upsert_section(report, SECTION_TITLE, report_lines(result, image))


def report_lines(result: OodResult, image: str) -> list[str]:
    """The markdown section: one row per folder, then the histogram."""
    s = result["in_scope"]
    lines = [
        f"Each folder scored by the out-of-scope detector (`{result['backend']}`, threshold "
        f"{result['threshold']:.4f}) against the {s['n']} in-scope {result['split']} images "
        f"({s['flagged']} of them refused). AUROC: how well the score ranks the folder above "
        "the in-scope images (1 = perfectly). FPR at 95% TPR: the share of in-scope images a "
        "threshold catching 95% of the folder would refuse.",
        "",
        "| folder | images | refused | AUROC | FPR at 95% TPR | unreadable |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["folders"]:
        rate = "n/a" if r["flagged_rate"] is None else f"{r['flagged_rate']:.1%}"
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.4f}"
        fpr = "n/a" if r["fpr_at_95_tpr"] is None else f"{r['fpr_at_95_tpr']:.1%}"
        lines.append(
            f"| `{r['folder']}` | {r['n']} | {r['flagged']} ({rate}) | {auroc} | {fpr} | "
            f"{len(r['unreadable'])} |"
        )
    return [*lines, "", f"![out-of-scope scores]({image})"]


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
