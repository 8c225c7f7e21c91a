"""The figures of a grouped, class-stratified K-fold cross-validation (`workflows.cv_job` runs it):
the protocols of the leakage study, the settings, metrics per fold and pooled with intervals
that resample duplicate groups (or blocks) rather than images (`metrics.group_bootstrap_ci`),
and the protocols' paired comparison. It reads the folds' predictions files (`cv_fold`) and
writes only `cv_config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from bloodcell.data.folds import DEFAULT_GROUPING, DEFAULT_VAL_FRACTION, RUN_GROUPINGS, cv_groups
from bloodcell.data.manifest import ManifestRow, file_sha256
from bloodcell.data.split import group_id, split_counts
from bloodcell.data.verify import VerifyReport
from bloodcell.errors import ModelError
from bloodcell.evaluation.cv_fold import read_predictions
from bloodcell.evaluation.shortcut_audit import pool as pool_audits
from bloodcell.labels import LABELS
from bloodcell.records import (
    AuditVariants,
    CvFold,
    CvMetrics,
    CvResult,
    CvSeed,
    CvSettingsRecord,
    ProtocolRow,
)
from bloodcell.run_dir import CvDir, FoldDir, read_json, write_json

#: The leakage study: protocol name -> what it keeps together. (a) is the usual protocol.
PROTOCOLS: dict[str, str] = {
    "image": "(a) random image-level split: ungrouped, stratified by class",
    "near": "(b) grouped by duplicates: exact (sha256) and near (perceptual hash) copies",
    "block": "(c) grouped by blocks of consecutive file numbers, and duplicates",
    "run": "(d) grouped by runs of about one patient's consecutive file numbers: new slides",
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
    #: Audit what each fold's model looks at on its test part (`workflows.audit_job`); the
    #: stain audit makes it the slowest step of a fold.
    audit: bool = True

    def to_record(self) -> CvSettingsRecord:
        """The settings as `cv.json` holds them."""
        return {
            "folds": self.folds,
            "grouping": self.grouping,
            "block_size": self.block_size,
            "val_fraction": self.val_fraction,
            "seeds": list(self.seeds),
            "calibrate": self.calibrate,
            "audit": self.audit,
        }


def check_settings(out: Path, record: Mapping[str, object]) -> None:
    """Write OUT/cv_config.json, or refuse to continue a folder made with other settings."""
    record = json.loads(json.dumps(record))  # as saved: tuples become lists
    path = CvDir(out).settings
    if path.is_file():
        saved = read_json(path)
        diff = {k: (saved.get(k), v) for k, v in record.items() if saved.get(k) != v}
        if diff:
            raise ModelError(
                f"{out} holds a cross-validation with other settings {diff} (saved, given); "
                "rerun with the same options to continue it, or choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


# --- metrics --------------------------------------------------------------------------------------


def cv_metrics(y_true: np.ndarray, probs: np.ndarray, groups: Sequence[str]) -> CvMetrics:
    """`metrics.compute_metrics`, with its intervals from resampling groups, not images."""
    from bloodcell.evaluation.metrics import compute_metrics, group_bootstrap_ci

    m: dict[str, object] = dict(compute_metrics(y_true, probs, LABELS))
    for key in ("calibration_bins", "bootstrap", "ci95"):
        m.pop(key)
    m["ci95"] = group_bootstrap_ci(y_true, probs, groups, LABELS)
    return cast(CvMetrics, m)


def ci_unit(report: VerifyReport, grouping: str, block_size: int | None) -> dict[str, str]:
    """path -> the group the intervals resample: blocks for "block", runs for "run", else
    duplicate groups (exact and near), even when the folds were not grouped, since copies are
    not independent evidence whatever the split."""
    unit = grouping if grouping in RUN_GROUPINGS else "near"
    groups = cv_groups(report, unit, block_size if unit in RUN_GROUPINGS else None)
    return {r.path: group_id(k) for k, g in enumerate(groups) for r in g}


def summarise_seed(
    out: Path, seed: int, folds: list[list[ManifestRow]], unit_of: dict[str, str]
) -> CvSeed:
    per_fold: list[CvFold] = []
    pooled: tuple[list, list, list] = ([], [], [])
    for i, rows in enumerate(folds):
        fold = CvDir(out).fold(seed, i + 1)
        paths, y, probs = read_predictions(fold.predictions)
        fold_groups = [unit_of[p] for p in paths]
        manifest = fold.manifest
        m: CvFold = {
            **cv_metrics(y, probs, fold_groups),
            "fold": i + 1,
            "manifest": str(manifest.relative_to(out)),
            "manifest_sha256": file_sha256(manifest),
            "counts": split_counts(rows),
        }
        per_fold.append(m)
        for acc, part in zip(pooled, (fold_groups, y, probs), strict=True):
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


def _fold_audit(fold: FoldDir) -> AuditVariants | None:
    """The audit summary of a fold's test part (None for a fold audited before audits)."""
    path = fold.run.audit_json("test")
    return read_json(path)["variants"] if path.is_file() else None


def over_seeds(seeds: list[CvSeed]) -> dict[str, float]:
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
    rows: list[ProtocolRow] = []
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
