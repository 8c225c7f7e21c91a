"""Evaluation the way a careful reviewer reads it: not one accuracy figure, but per-class
metrics, the clinical malignant-vs-benign trade-off, calibration, and how sure we can be
(95% bootstrap confidence intervals over the evaluated images; all from `metrics`).

`split_metrics` predicts one split of the manifest with a run opened by `runs.open_run` (through
`models.torch_backend.dataset_outputs`, the loop calibration and export use too) and returns its
figures; `write_predictions` and `record_in_model` keep them on disk. Beside the classifier's
figures it reports the out-of-scope detector's refusals (`scope_metrics`) and the conformal
prediction sets' coverage and size (`conformal_metrics`). `workflows.evaluate_job.evaluate_run`
joins these with the pictures and report of `reporting.eval_report`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from bloodcell.evaluation.metrics import compute_metrics, wilson_ci
from bloodcell.evaluation.runs import Run
from bloodcell.records import (
    EvalData,
    ModelConfig,
    ScopeDetectorRecord,
    ScopeMetrics,
    SetLevel,
    SetMetrics,
    SplitMetrics,
)
from bloodcell.run_dir import RunData

if TYPE_CHECKING:
    from bloodcell.models.conformal import ConformalSets

# --- out of scope and prediction sets ------------------------------------------------------------

#: Coverages the report shows prediction sets at, whatever the model's own default.
REPORT_COVERAGES = (0.90, 0.95, 0.99)


def conformal_metrics(
    conformal: ConformalSets | None, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> SetMetrics | None:
    """Empirical coverage (Wilson 95% CI), mean set size and share of sets with more than one
    class, at each of `REPORT_COVERAGES` and the model's own; None without conformal sets."""
    from bloodcell.models.conformal import set_labels

    if conformal is None or len(y_true) == 0:
        return None
    y_true = np.asarray(y_true, dtype=int)
    rows: dict[str, SetLevel] = {}
    for coverage in sorted({*REPORT_COVERAGES, conformal.coverage}):
        member = conformal.sets(probs, coverage)
        covered = int(member[np.arange(len(y_true)), y_true].sum())
        sizes = member.sum(axis=1)
        pairs: dict[str, int] = {}
        for names in set_labels(member[sizes > 1], labels):
            key = " | ".join(names)
            pairs[key] = pairs.get(key, 0) + 1
        rows[f"{coverage:.2f}"] = {
            "coverage_target": coverage,
            "coverage": covered / len(y_true),
            "coverage_ci95": wilson_ci(covered, len(y_true)),
            "mean_set_size": float(sizes.mean()),
            "multi_class_share": float((sizes > 1).mean()),
            "multi_class_sets": pairs,
        }
    return {"default_coverage": conformal.coverage, "n": int(len(y_true)), "levels": rows}


def scope_metrics(
    scores: np.ndarray | None, detector: ScopeDetectorRecord | None, paths: Sequence[str]
) -> ScopeMetrics | None:
    """How many in-scope images the detector (its config: threshold, acceptance) refused, and
    which; None without a detector."""
    if scores is None or detector is None:
        return None
    flagged = np.asarray(scores) > detector["threshold"]
    n = len(flagged)
    return {
        "threshold": float(detector["threshold"]),
        "acceptance": float(detector["acceptance"]),
        "n": n,
        "flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()) if n else 0.0,
        "flagged_ci95": wilson_ci(int(flagged.sum()), n),
        "flagged_paths": [p for p, f in zip(paths, flagged, strict=True) if f],
        "score_quantiles": {q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.9", "0.99")}
        if n
        else {},
    }


# --- the pieces of a run's evaluation (`workflows.evaluate_job.evaluate_run` joins them) ----------


@dataclass(frozen=True)
class SplitEvaluation:
    """One split evaluated: its figures, and what the pictures and predictions.csv are drawn
    from."""

    metrics: SplitMetrics
    rows: Sequence[Any]
    y_true: np.ndarray
    probs: np.ndarray
    scope_scores: np.ndarray | None


def split_metrics(
    run: Run, split: str = "test", batch_size: int = 64, progress: bool = True
) -> SplitEvaluation:
    """Predict one manifest split of an opened run (torch, so the engines' reference is
    measured) with its calibration temperature, out-of-scope detector and prediction sets."""
    from bloodcell.data.manifest import read_manifest

    backend, loaded = run.backend, run.loaded
    data, rows = run.data, run.split(split).rows
    all_rows = read_manifest(data.manifest)
    t0 = time.perf_counter()
    y_true, probs, scope_scores = predict_split(
        backend, rows, data.root, batch_size, progress, split
    )
    seconds = time.perf_counter() - t0
    metrics = cast(SplitMetrics, compute_metrics(y_true, probs, loaded.labels))
    paths = [r.path for r in rows]
    metrics["out_of_scope"] = scope_metrics(scope_scores, backend.scope_info, paths)
    metrics["prediction_sets"] = conformal_metrics(backend.conformal, y_true, probs, backend.labels)
    metrics |= {
        "split": split,
        "model_dir": str(loaded.path),
        "architecture": loaded.architecture,
        "temperature": loaded.temperature,
        "data": data_record(data, all_rows, loaded.config),
        "predict_seconds": round(seconds, 2),
        "images_per_second": round(len(rows) / seconds, 1) if seconds else None,
    }
    return SplitEvaluation(metrics, rows, y_true, probs, scope_scores)


def predict_split(
    backend: Any, rows: Sequence[Any], root: Path, batch_size: int, progress: bool, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """True classes, temperature-scaled probabilities and out-of-scope scores of `rows`."""
    from bloodcell.data.dataset import ManifestDataset
    from bloodcell.models.backends import softmax
    from bloodcell.models.torch_backend import dataset_outputs

    dataset = ManifestDataset(rows, root, backend.preprocess.transform())
    outputs, y_true = dataset_outputs(
        backend, dataset, batch_size, progress=f"predict {split}" if progress else None
    )
    probs = softmax(outputs.logits, backend.temperature).astype(float)
    return y_true, probs, outputs.ood_score


def data_record(data: RunData, all_rows: Sequence[Any], config: ModelConfig) -> EvalData:
    """Which data was read, and whether its manifest is the one the model was trained on."""
    from bloodcell.data.manifest import file_sha256
    from bloodcell.data.split import split_counts

    sha = file_sha256(data.manifest)
    return {
        "manifest": str(data.manifest.resolve()),
        "manifest_sha256": sha,
        "matches_training_manifest": sha == config.get("data", {}).get("manifest_sha256"),
        "data_root": str(data.root),
        "counts": split_counts(all_rows),
    }


def write_predictions(
    path: Path,
    rows: Sequence[Any],
    probs: np.ndarray,
    scope_scores: np.ndarray | None,
    labels: Sequence[str],
) -> None:
    """predictions.csv: each image's true and predicted class, score and probabilities."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "label", "predicted", "ood_score", *[f"p_{lab}" for lab in labels]])
        for i, (row, p) in enumerate(zip(rows, probs, strict=True)):
            score = "" if scope_scores is None else f"{scope_scores[i]:.6f}"
            w.writerow(
                [row.path, row.label, labels[int(p.argmax())], score, *[f"{v:.6f}" for v in p]]
            )


def record_in_model(model_dir: Path, split: str, metrics: SplitMetrics) -> None:
    """Keep the model's own metrics.json up to date, keyed by split (large tables left out)."""
    from bloodcell.models.saved import update_metrics

    skip = {"calibration_bins", "confusion_matrix"}
    update_metrics(model_dir, **{split: {k: v for k, v in metrics.items() if k not in skip}})


def summary_line(metrics: SplitMetrics) -> str:
    """'test: accuracy 97.5% (95% CI 95.6-98.8%), macro-F1 0.974 (0.953-0.988), n=281'."""
    lo, hi = metrics["ci95"]["accuracy"]
    flo, fhi = metrics["ci95"]["macro_f1"]
    return (
        f"{metrics.get('split', '?')}: accuracy {metrics['accuracy']:.1%} "
        f"(95% CI {lo:.1%}-{hi:.1%}), macro-F1 {metrics['macro_f1']:.3f} "
        f"({flo:.3f}-{fhi:.3f}), n={metrics['n']}"
    )
