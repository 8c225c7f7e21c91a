"""What `bloodcell benchmark` writes: `benchmark.json` (`BenchmarkRecord`) and, per recipe and
seed, `benchmark_train.json` (`MeasuredTraining`)."""

from __future__ import annotations

from typing import Literal, TypedDict

from bloodcell.records.metrics_records import Interval, SetLevel
from bloodcell.records.study_records import Int8Accuracy


class MeasuredTraining(TypedDict):
    """`benchmark_train.json`: the training process's wall time and peak resident memory."""

    wall_s: float
    peak_rss_mb: float


class FolderRefusals(TypedDict):
    """One folder of other images: how many, the share refused and the score's AUROC."""

    n: int
    flagged_rate: float | None
    auroc: float | None


class ScopeFigures(TypedDict):
    """Out-of-scope refusals (test, corrupted test, other folders) and the 95% sets; None
    where the model has no detector or no sets."""

    ood_test_flagged: int | None
    ood_test_flagged_paths: list[str] | None
    ood_corrupted_worst_rate: float | None
    ood_corrupted_rates: dict[str, float | None]
    sets95: SetLevel | None
    ood_folders: dict[str, FolderRefusals]


class RecipeResult(ScopeFigures):
    """One recipe and seed: training cost, test figures and robustness."""

    recipe: str
    seed: int
    run: str
    train_wall_s: float
    feature_s: float | None
    fit_s: float | None
    train_img_per_s: float
    peak_rss_mb: float
    test_accuracy: float
    test_ci95: Interval
    test_macro_f1: float
    min_recall: float
    robust_worst: str | None
    robust_worst_accuracy: float | None
    robust_middle: dict[str, float]


class EngineSpeed(TypedDict):
    img_per_s: float
    latency_ms: float
    size_mb: float


#: The engines timed for each recipe, in the table's order.
Engine = Literal["torch eager", "onnx fp32", "onnx int8"]
ENGINES: tuple[Engine, ...] = ("torch eager", "onnx fp32", "onnx int8")

#: One recipe's engines (first seed): the speed and size of each, and the ONNX files' test
#: accuracy (None when the test split was not found).
InferenceFigures = TypedDict(
    "InferenceFigures",
    {
        "torch eager": EngineSpeed,
        "onnx fp32": EngineSpeed,
        "onnx int8": EngineSpeed,
        "fp32_test_accuracy": float | None,
        "int8_test_accuracy": float | None,
        "int8_accuracy_summary": Int8Accuracy | dict[str, float],
    },
)


class BenchmarkRecord(TypedDict):
    """`benchmark.json`."""

    machine: str
    results: list[RecipeResult]
    inference: dict[str, InferenceFigures]
