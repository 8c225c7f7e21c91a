"""Robustness: how accuracy holds up when the microscope, the stain or the camera changes.

`robustness_result` re-evaluates one split under every corruption of `data.corruptions` at each
severity, next to the clean images, and returns what `robustness.json` holds;
`workflows.evaluate_job.evaluate_robustness` writes it with `robustness.csv`, `robustness.png` and a
"Robustness" section in `report.md` into RUN/eval/<split>/ (`reporting.robustness_report`).

Each image is decoded once; corruptions are applied in memory with a generator seeded from
(seed, corruption name, severity, image index), so a rerun, or a run on a subset of corruptions,
sees exactly the same corrupted images. Scores come from `metrics`, as `compute_metrics` gives
them (and are tested against it). The model is
opened through `runs.open_run`, so an exported `.onnx` file works as well.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from bloodcell.data.batches import made_ahead
from bloodcell.data.corruptions import MIDDLE_SEVERITY, Corruption, get
from bloodcell.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    clinical_metrics,
    macro_f1,
    wilson_ci,
)
from bloodcell.evaluation.runs import Run
from bloodcell.models.backends import Backend, Scored
from bloodcell.records import (
    ConditionScores,
    RobustnessResult,
    RobustnessRow,
    RobustnessSummary,
)

#: The bar: no middle-severity corruption may take accuracy below this.
TARGET_ACCURACY = 0.95
DEFAULT_SEED = 0

#: One evaluated condition: (corruption or None for clean, severity or 0).
Condition = tuple[Corruption | None, int]


# --- the model and the data ----------------------------------------------------------------------


def _rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    """Independent of which other corruptions run, and stable across Python processes."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, index])


def predict_condition(
    backend: Backend,
    images: Sequence[Image.Image],
    transform: Callable,
    condition: Condition,
    seed: int = DEFAULT_SEED,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> Scored:
    """Probabilities (N, K) and out-of-scope scores for `images` under one condition."""
    import torch

    corruption, severity = condition

    def make(i: int) -> torch.Tensor:
        img = images[i]
        if corruption is not None:
            img = corruption(img, severity, _rng(seed, corruption.name, severity, i))
        return transform(img)

    probs, scores = [], []
    for batch in made_ahead(make, range(len(images)), batch_size):
        scored = backend.score(torch.stack(batch))
        probs.append(scored.probs)
        scores.append(scored.ood_score)
        if on_batch:
            on_batch(len(batch))
    present = [s for s in scores if s is not None]
    return Scored(
        np.concatenate(probs).astype(float),
        np.concatenate(present) if present and len(present) == len(scores) else None,
    )


def scope_rate(backend: Backend, scored: Scored) -> float | None:
    """Share of the images the out-of-scope detector refused (None without one)."""
    flags = backend.out_of_scope(scored.ood_score)
    return None if flags is None else float(flags.mean())


# --- scoring --------------------------------------------------------------------------------------


def score(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> ConditionScores:
    """Accuracy (with its Wilson 95% interval), macro-F1, balanced accuracy, sensitivity and
    specificity, as `metrics.compute_metrics` gives them: the full metrics (ROC, bootstrap)
    cost ~0.1 s per condition and are not needed here."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(probs).argmax(axis=1)
    c = clinical_metrics(y_true, y_pred, labels)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "accuracy_ci95": wilson_ci(int((y_pred == y_true).sum()), len(y_true)),
        "macro_f1": macro_f1(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "sensitivity": c["sensitivity"],
        "specificity": c["specificity"],
    }


def check_conditions(
    corruptions: str | Sequence[str] | None, severities: Sequence[int] | None
) -> None:
    """Fail on a corruption or severity typo before any work is done (the CLI calls it first)."""
    from bloodcell.errors import BloodcellError

    try:
        conditions(get(corruptions), severities)
    except ValueError as exc:
        raise BloodcellError(str(exc)) from None


def conditions(corruptions: Sequence[Corruption], severities: Sequence[int] | None) -> list:
    """Clean first, then every corruption at each asked severity (all when None)."""
    out: list[Condition] = [(None, 0)]
    for c in corruptions:
        for s in severities or c.severities:
            c.value(s)  # raises a clear ValueError for a severity out of range
            out.append((c, s))
    return out


def worst_middle(results: Sequence[RobustnessRow]) -> RobustnessRow | None:
    """The middle-severity row with the lowest accuracy (None when severity 2 was not run)."""
    middle = [r for r in results if r["severity"] == MIDDLE_SEVERITY]
    return min(middle, key=lambda r: (r["accuracy"], r["macro_f1"])) if middle else None


# --- the evaluation -------------------------------------------------------------------------------


def robustness_result(
    run: Run,
    split: str,
    chosen: Sequence[Corruption],
    todo: Sequence[Condition],
    seed: int = DEFAULT_SEED,
    batch_size: int = 64,
    progress: bool = True,
) -> RobustnessResult:
    """Evaluate an opened run's model (run dir, model dir or `.onnx`) on `split` clean and
    under each condition of `todo` (`conditions` of the `chosen` corruptions)."""
    s = run.images(split, progress)
    backend, data = run.backend, run.data
    t0 = time.perf_counter()
    results = score_conditions(backend, s.images, s.y_true, todo, seed, batch_size, progress)
    result: RobustnessResult = {
        "split": split,
        "n": len(s.split.rows),
        "model": str(backend.path),
        "backend": backend.engine,
        "architecture": backend.architecture,
        "seed": seed,
        **summarise(results, chosen),
        "data": {"manifest": str(data.manifest), "data_root": str(data.root)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return result


def score_conditions(
    backend: Backend,
    images: Sequence[Image.Image],
    y_true: np.ndarray,
    todo: Sequence[Condition],
    seed: int,
    batch_size: int,
    progress: bool,
) -> list[RobustnessRow]:
    """One row per condition: its setting, `score` and the share refused as out of scope."""
    from tqdm import tqdm

    transform = backend.preprocess.transform()
    labels = list(backend.labels)
    bar = tqdm(
        total=len(todo) * len(images),
        desc="robustness",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    results = []
    with bar:
        for corruption, severity in todo:
            bar.set_postfix_str(corruption.label(severity) if corruption else "clean")
            if corruption:
                bar.set_description(corruption.name)
            scored = predict_condition(
                backend, images, transform, (corruption, severity), seed, batch_size, bar.update
            )
            scores = score(y_true, scored.probs, labels)
            scores["out_of_scope_rate"] = scope_rate(backend, scored)
            results.append(_row(corruption, severity, scores))
    return results


def summarise(results: list[RobustnessRow], chosen: Sequence[Corruption]) -> RobustnessSummary:
    """Clean against corrupted (clean first in `results`): each row's drop, the worst middle
    case and the corruptions that take accuracy below the target at the middle severity."""
    clean, corrupted = results[0], results[1:]
    for r in corrupted:
        r["drop"] = clean["accuracy"] - r["accuracy"]
    return {
        "target_accuracy": TARGET_ACCURACY,
        "middle_severity": MIDDLE_SEVERITY,
        "clean": clean,
        "results": corrupted,
        "corruptions": {
            c.name: {"description": c.description, "levels": list(c.levels)} for c in chosen
        },
        "worst_middle": worst_middle(corrupted),
        "below_target_middle": [
            r["corruption"]
            for r in corrupted
            if r["severity"] == MIDDLE_SEVERITY and r["accuracy"] < TARGET_ACCURACY
        ],
    }


def _row(corruption: Corruption | None, severity: int, scores: ConditionScores) -> RobustnessRow:
    return {
        "corruption": corruption.name if corruption else "clean",
        "severity": severity,
        "parameter": corruption.value(severity) if corruption else None,
        "setting": corruption.label(severity) if corruption else "none",
        **scores,
    }


# --- command line ---------------------------------------------------------------------------------


def summary_lines(result: RobustnessResult) -> list[str]:
    """What the CLI prints: clean, the worst middle case, and where the files are."""
    clean, worst = result["clean"], result["worst_middle"]
    lines = [f"robustness ({result['split']}, n={result['n']}): clean {clean['accuracy']:.1%}"]
    if worst:
        lines.append(
            f"worst middle-severity case: {worst['corruption']} {worst['setting']} "
            f"{worst['accuracy']:.1%}; below {TARGET_ACCURACY:.0%}: "
            f"{', '.join(result['below_target_middle']) or 'none'}"
        )
    return lines
