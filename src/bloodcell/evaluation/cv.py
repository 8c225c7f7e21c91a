"""`bloodcell cv`: grouped, class-stratified K-fold cross-validation of a training recipe, and
the leakage study that runs the same recipe under the random image-level split beside it.

Why: one test split of a few hundred images gives an accuracy whose interval is about two
points wide, and the published figures on this data come from random image-level splits that
put copies of test images into training. Cross-validation tests every image once (per seed)
and reports a figure over the whole dataset, with its spread over folds and an interval that
resamples duplicate groups rather than images (`metrics.group_bootstrap_ci`).

Each fold (`cv_fold.run_fold`): its manifest (`data.folds`), `train.train` on it, temperature
scaling on its validation part (`calibrate`, as `bloodcell run` does), then predictions for its
test part.
Layout of OUT (`run_dir.CvDir`):

  cv_config.json                    the settings; a rerun with other settings is refused
  verify.json                       what `bloodcell data verify` found
  seed-S/fold-F/manifest.csv        the fold's split (test = this fold), byte-identical for the
                                    same data, settings and seed; `bloodcell train` reads it
  seed-S/fold-F/run/                the fold's training run (model/, log.csv, curves.png, ...)
  seed-S/fold-F/predictions.csv     its out-of-fold predictions, written last and atomically:
                                    a fold with this file is done, and a rerun skips it
  cv.json, report.md, confusion_matrix_seed-S.png, folds.png

With `compare_protocols`, one such folder per protocol (image/, near/, block/), and beside
them protocols.json, report.md and protocols.png.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from bloodcell.data.folds import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_GROUPING,
    DEFAULT_VAL_FRACTION,
    check_grouping,
    cv_groups,
    make_folds,
)
from bloodcell.data.manifest import ManifestRow, file_sha256, select
from bloodcell.data.split import group_id, split_counts
from bloodcell.data.verify import VerifyReport
from bloodcell.errors import ModelError
from bloodcell.evaluation.audit import pool as pool_audits
from bloodcell.evaluation.cv_fold import read_predictions, run_fold, write_fold_manifest
from bloodcell.evaluation.metrics import accuracy
from bloodcell.labels import LABELS
from bloodcell.records import CvFold, CvMetrics, CvResult, CvSeed, ProtocolRow, ProtocolsResult
from bloodcell.run_dir import CvDir, FoldDir, atomic
from bloodcell.train import TrainConfig

#: The leakage study: protocol name -> what it keeps together. (a) is the usual protocol.
PROTOCOLS: dict[str, str] = {
    "image": "(a) random image-level split: ungrouped, stratified by class",
    "near": "(b) grouped by duplicates: exact (sha256) and near (perceptual hash) copies",
    "block": "(c) grouped by blocks of consecutive file numbers, and duplicates",
}


@dataclass(frozen=True)
class CVSettings:
    """How the folds are made and used; the training recipe is a separate `TrainConfig`."""

    folds: int = 5
    grouping: str = DEFAULT_GROUPING
    block_size: int | None = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    seeds: tuple[int, ...] = (0,)
    #: Fit a temperature on each fold's validation part before predicting its test part.
    calibrate: bool = True


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_settings(out: Path, record: dict[str, Any]) -> None:
    """Write OUT/cv_config.json, or refuse to continue a folder made with other settings."""
    path = CvDir(out).settings
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = {k: (saved.get(k), v) for k, v in record.items() if saved.get(k) != v}
        if diff:
            raise ModelError(
                f"{out} holds a cross-validation with other settings {diff} (saved, given); "
                "rerun with the same options to continue it, or choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# --- metrics --------------------------------------------------------------------------------------


def cv_metrics(y_true: np.ndarray, probs: np.ndarray, groups: Sequence[str]) -> CvMetrics:
    """`metrics.compute_metrics`, with its intervals from resampling groups, not images."""
    from bloodcell.evaluation.metrics import compute_metrics, group_bootstrap_ci

    m: dict[str, Any] = dict(compute_metrics(y_true, probs, LABELS))
    for key in ("calibration_bins", "bootstrap", "ci95"):
        m.pop(key)
    m["ci95"] = group_bootstrap_ci(y_true, probs, groups, LABELS)
    return cast(CvMetrics, m)


def _ci_unit(report: VerifyReport, grouping: str, block_size: int | None) -> dict[str, str]:
    """path -> the group the intervals resample: blocks for "block", else duplicate groups
    (exact and near), even when the folds were not grouped, since copies are not independent
    evidence whatever the split."""
    unit = "block" if grouping == "block" else "near"
    groups = cv_groups(report, unit, block_size if unit == "block" else None)
    return {r.path: group_id(k) for k, g in enumerate(groups) for r in g}


def _summarise_seed(
    out: Path, seed: int, folds: list[list[ManifestRow]], unit_of: dict[str, str]
) -> CvSeed:
    per_fold: list[CvFold] = []
    pooled: tuple[list, list, list] = ([], [], [])
    for i, rows in enumerate(folds):
        fold = CvDir(out).fold(seed, i + 1)
        paths, y, probs = read_predictions(fold.predictions)
        groups = [unit_of[p] for p in paths]
        manifest = fold.manifest
        m: CvFold = {
            **cv_metrics(y, probs, groups),
            "fold": i + 1,
            "manifest": str(manifest.relative_to(out)),
            "manifest_sha256": file_sha256(manifest),
            "counts": split_counts(rows),
        }
        per_fold.append(m)
        for acc, part in zip(pooled, (groups, y, probs), strict=True):
            acc.append(part)
    groups, y, probs = (np.concatenate(p) for p in pooled)
    accs = np.array([m["accuracy"] for m in per_fold])
    audits = [_fold_audit(CvDir(out).fold(seed, i + 1)) for i in range(len(folds))]
    return {
        "seed": seed,
        "folds": per_fold,
        "pooled": cv_metrics(y, probs, list(groups)),
        "audit": pool_audits([a for a in audits if a]) if all(audits) else None,
        "fold_accuracy": {
            "mean": float(accs.mean()),
            "sd": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
            "min": float(accs.min()),
            "max": float(accs.max()),
        },
    }


def _fold_audit(fold: FoldDir) -> dict[str, Any] | None:
    """The audit summary of a fold's test part (None for a fold audited before audits)."""
    path = fold.run.audit_json("test")
    return json.loads(path.read_text())["variants"] if path.is_file() else None


def _verified(data_root: Path, progress: bool) -> VerifyReport:
    from bloodcell.data.discover import discover
    from bloodcell.data.verify import verify

    report = verify(discover(data_root), progress=progress)
    for bad in report.unreadable:
        _say(f"left out (unreadable): {bad['path']}: {bad['reason']}")
    return report


# --- the job ----------------------------------------------------------------------------------


def run_cv(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    settings: CVSettings = CVSettings(),
    progress: bool = True,
    report: VerifyReport | None = None,
    name: str = "cv",
) -> CvResult:
    """Cross-validate `config` on the data; writes OUT (see the module's docstring) and returns
    what cv.json holds. Folds whose predictions exist are skipped, so a killed run continues."""
    from bloodcell.reporting.cv_report import write_cv_report

    data_root = Path(data_root).expanduser()
    out = Path(out_dir)
    settings = replace(settings, block_size=check_grouping(settings.grouping, settings.block_size))
    record = {k: v for k, v in asdict(settings).items() if k != "seeds"}
    record |= {"data_root": str(data_root.resolve()), "config": replace(config, seed=0).to_dict()}
    _check_settings(out, record)
    report = report or _verified(data_root, progress)
    with atomic(CvDir(out).verify) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    unit_of = _ci_unit(report, settings.grouping, settings.block_size)
    t_start = time.perf_counter()
    trained = 0
    seeds: list[CvSeed] = []
    for seed in settings.seeds:
        folds = make_folds(
            report,
            settings.folds,
            seed,
            settings.grouping,
            settings.block_size,
            settings.val_fraction,
        )
        trained += _run_folds(out, seed, folds, data_root, config, settings, progress, name)
        seeds.append(_summarise_seed(out, seed, folds, unit_of))
    result: CvResult = {
        "name": name,
        "settings": asdict(settings),
        "recipe": config.recipe,
        "config": config.to_dict(),
        "data": {
            "data_root": str(data_root.resolve()),
            "images": report.total,
            "unreadable": len(report.unreadable),
            "ci_unit": "blocks" if settings.grouping == "block" else "duplicate groups",
            "ci_groups": len(set(unit_of.values())),
        },
        "seeds": seeds,
        "folds_trained_now": trained,
        "seconds_now": round(time.perf_counter() - t_start, 1),
    }
    if len(seeds) > 1:
        result["over_seeds"] = _over_seeds(seeds)
    CvDir(out).result.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    _say(f"{name}: report {write_cv_report(result, out)}")
    return result


def _run_folds(
    out: Path,
    seed: int,
    folds: list[list[ManifestRow]],
    data_root: Path,
    config: TrainConfig,
    settings: CVSettings,
    progress: bool,
    name: str,
) -> int:
    """Write every fold's manifest and train, calibrate and predict the unfinished folds;
    returns how many were trained now."""
    trained = 0
    for i, rows in enumerate(folds):
        fold = CvDir(out).fold(seed, i + 1)
        write_fold_manifest(rows, fold.manifest)
        where = f"{name}: seed {seed}, fold {i + 1}/{len(folds)}"
        if fold.predictions.is_file():
            _say(f"{where}: finished before ({fold.predictions}), skipped")
            continue
        n = {s: len(select(rows, s)) for s in ("train", "val", "test")}
        _say(f"{where}: training on {n['train']} images (val {n['val']}), "
             f"testing on {n['test']}")  # fmt: skip
        t0 = time.perf_counter()
        # A fold's model only predicts its test part: no out-of-scope detector is fitted.
        fold_config = replace(config, seed=seed, ood_acceptance=None)
        preds = run_fold(fold, rows, data_root, fold_config, settings.calibrate, progress)
        _, y, probs = read_predictions(preds)
        trained += 1
        _say(f"{where}: done in {time.perf_counter() - t0:.0f} s, "
             f"accuracy {accuracy(y, probs.argmax(1)):.1%}")  # fmt: skip
    return trained


def _over_seeds(seeds: list[CvSeed]) -> dict[str, float]:
    """How the pooled accuracy moves from seed to seed."""
    accs = np.array([s["pooled"]["accuracy"] for s in seeds])
    return {
        "accuracy_mean": float(accs.mean()),
        "accuracy_sd": float(accs.std(ddof=1)),
        "accuracy_min": float(accs.min()),
        "accuracy_max": float(accs.max()),
    }


def correct_share(out: Path, cv: CvResult) -> dict[str, float]:
    """path -> share of seeds whose out-of-fold prediction was right."""
    hits: dict[str, float] = {}
    for s in cv["seeds"]:
        for f in s["folds"]:
            fold = FoldDir((out / f["manifest"]).parent)
            paths, y, probs = read_predictions(fold.predictions)
            for p, ok in zip(paths, probs.argmax(1) == y, strict=True):
                hits[p] = hits.get(p, 0.0) + float(ok) / len(cv["seeds"])
    return hits


def compare_protocols(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    settings: CVSettings = CVSettings(),
    progress: bool = True,
) -> ProtocolsResult:
    """The same recipe, folds and seeds under each of `PROTOCOLS`, each into OUT/<protocol>/,
    then pooled accuracy side by side with its difference from (a) and a paired interval."""
    from bloodcell.evaluation.metrics import BOOTSTRAP_SEED, N_BOOTSTRAP
    from bloodcell.reporting.cv_report import write_protocol_report

    data_root = Path(data_root).expanduser()
    out = Path(out_dir)
    block_size = settings.block_size or DEFAULT_BLOCK_SIZE
    report = _verified(data_root, progress)
    runs = {}
    for protocol in PROTOCOLS:
        s = replace(
            settings, grouping=protocol, block_size=block_size if protocol == "block" else None
        )
        where = CvDir(out).protocol(protocol).path
        runs[protocol] = run_cv(data_root, where, config, s, progress, report, protocol)
    # Blocks contain every duplicate group, so resampling them is fair to all three protocols.
    unit_of = _ci_unit(report, "block", block_size)
    paths = sorted(unit_of)
    groups = [unit_of[p] for p in paths]
    result: ProtocolsResult = {
        "folds": settings.folds,
        "seeds": list(settings.seeds),
        "block_size": block_size,
        "recipe": config.recipe,
        "images": len(paths),
        "bootstrap": {
            "unit": f"blocks of {block_size} file numbers joined with duplicate groups",
            "groups": len(set(groups)),
            "resamples": N_BOOTSTRAP,
            "seed": BOOTSTRAP_SEED,
            "method": "paired percentile bootstrap over groups",
        },
        "protocols": protocol_rows(out, runs, paths, groups),
    }
    CvDir(out).protocols.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    _say(f"protocols: report {write_protocol_report(result, out)}")
    return result


def protocol_rows(
    out: Path, runs: dict[str, CvResult], paths: list[str], groups: list[str]
) -> list[ProtocolRow]:
    """Each protocol's pooled accuracy and its difference from (a), with intervals from one
    shared draw of `groups` per resample (so the difference's interval is paired)."""
    from bloodcell.evaluation.metrics import group_bootstrap_mean

    correct = {}
    for protocol, cv in runs.items():
        share = correct_share(CvDir(out).protocol(protocol).path, cv)
        correct[protocol] = np.array([share[p] for p in paths])
    rows = []
    for protocol, cv in runs.items():
        acc = group_bootstrap_mean(correct[protocol], groups)
        diff = group_bootstrap_mean(correct[protocol] - correct["image"], groups)
        rows.append(
            {
                "protocol": protocol,
                "description": PROTOCOLS[protocol],
                "accuracy": acc["mean"],
                "accuracy_ci95": acc["ci95"],
                "difference_vs_image": diff["mean"],
                "difference_ci95": diff["ci95"],
                "macro_f1": float(np.mean([s["pooled"]["macro_f1"] for s in cv["seeds"]])),
                "report": CvDir(Path(protocol)).report.as_posix(),
            }
        )
    return rows
