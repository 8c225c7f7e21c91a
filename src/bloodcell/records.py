"""The JSON records a run leaves on disk, as types.

`model/config.json` (`ModelConfig`), `model/metrics.json` (`ModelMetrics`, one `SplitMetrics`
per evaluated split; `eval/<split>/metrics.json` is one `SplitMetrics`), `train_config.json`
(`TrainConfigRecord`) and `train_summary.json` (`TrainSummary`). Readers name their keys
through these types instead of passing `dict[str, Any]` around, so what a file holds is written
down once. They are TypedDicts, plain dicts at run time: nothing here changes a byte on disk.
Records that older models or an exported file's neighbour may lack are `total=False`; readers
use `.get` for those keys.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

#: A 95% interval [low, high]; None where a resample never defined the figure.
Interval = list[float]


# --- config.json and train_config.json ------------------------------------------------------------


class DataRecord(TypedDict, total=False):
    """Where a model's data was (`train.data_record`): the manifest and its sha256, the root."""

    manifest: str
    manifest_sha256: str
    data_root: str


class CalibrationRecord(TypedDict):
    """`calibrate.calibration_summary`: the fitted temperature and what it changed on val."""

    temperature: float
    n: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


class ConformalRecord(TypedDict):
    """`models.conformal.ConformalSets.to_config`."""

    method: str
    coverage: float
    scores: list[float]
    #: `models.conformal.quantile_of(scores, coverage)`; absent in models calibrated before it.
    quantile: NotRequired[float]


class OodRecord(TypedDict):
    """`models.ood.OodDetector.to_config`."""

    method: str
    layers: list[Any]
    acceptance: float
    threshold: float
    blank_std: float
    file: str


class ModelConfig(TypedDict, total=False):
    """A saved model's `config.json` (`models.saved.save_model`, then `update_config`)."""

    format: str
    architecture: str
    labels: list[str]
    display_names: dict[str, str]
    preprocess: dict[str, Any]
    temperature: float
    uncertain_threshold: float
    #: The TrainConfig's fields and the TrainSummary's, merged.
    training: dict[str, Any]
    data: DataRecord
    versions: dict[str, str]
    calibration: CalibrationRecord
    conformal: ConformalRecord
    ood: OodRecord


class TrainConfigRecord(TypedDict):
    """`RUN/train_config.json`: written when a run starts, read back by `--resume`."""

    config: dict[str, Any]
    data: DataRecord
    started: str


class TrainSummary(TypedDict):
    """`RUN/train_summary.json`: how training went."""

    best_checkpoint: str
    best_epoch: int
    best_val: dict[str, float]
    model_checkpoint: str
    model_epoch: int
    epochs_trained: int
    device: str
    precision: str
    feature_cache: str | int | None
    feature_seconds: float
    fit_seconds: float
    world_size: int
    train_samples_per_rank: list[int]
    val_images: int


# --- metrics.json ---------------------------------------------------------------------------------


class ClassMetrics(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class RocAuc(TypedDict):
    """One-vs-rest AUC per class (None for a class absent or alone) and their macro mean."""

    per_class: dict[str, float | None]
    macro: float | None


class ClinicalMetrics(TypedDict):
    """Malignant (positive) vs benign from the predicted class, with Wilson intervals."""

    positive: str
    tp: int
    fn: int
    tn: int
    fp: int
    sensitivity: float | None
    specificity: float | None
    sensitivity_ci: Interval | None
    specificity_ci: Interval | None


class ImageIntervals(TypedDict):
    """Bootstrap over images (accuracy, macro-F1) and Wilson's interval for the accuracy."""

    accuracy: Interval
    macro_f1: Interval
    accuracy_wilson: Interval | None


class BootstrapRecord(TypedDict):
    resamples: int
    seed: int
    method: str


class GroupIntervals(TypedDict):
    """`metrics.group_bootstrap_ci`: intervals from resampling whole groups, and how."""

    accuracy: Interval | None
    macro_f1: Interval | None
    recall: dict[str, Interval | None]
    sensitivity: Interval | None
    specificity: Interval | None
    ece: Interval | None
    unit: str
    groups: int
    resamples: int
    seed: int
    level: float
    method: str


class CalibrationBin(TypedDict, total=False):
    """One reliability bin (lower, upper]; accuracy and confidence only when it holds images."""

    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float


class Metrics(TypedDict):
    """`metrics.compute_metrics`: every figure of one set of predictions."""

    n: int
    labels: list[str]
    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    cohen_kappa: float
    per_class: dict[str, ClassMetrics]
    roc_auc: RocAuc
    clinical: ClinicalMetrics
    ci95: ImageIntervals
    bootstrap: BootstrapRecord
    ece: float
    calibration_bins: list[CalibrationBin]
    confusion_matrix: list[list[int]]


class ScopeMetrics(TypedDict):
    """`evaluate.scope_metrics`: in-scope images the out-of-scope detector refused."""

    threshold: float
    acceptance: float
    n: int
    flagged: int
    flagged_rate: float
    flagged_ci95: Interval | None
    flagged_paths: list[str]
    score_quantiles: dict[str, float]


class SetLevel(TypedDict):
    coverage_target: float
    coverage: float
    coverage_ci95: Interval | None
    mean_set_size: float
    multi_class_share: float
    multi_class_sets: dict[str, int]


class SetMetrics(TypedDict):
    """`evaluate.conformal_metrics`: the prediction sets at each reported coverage."""

    default_coverage: float
    n: int
    levels: dict[str, SetLevel]


class EvalData(TypedDict):
    """Which data an evaluation read, and whether it is the data the model trained on."""

    manifest: str
    manifest_sha256: str
    matches_training_manifest: bool
    data_root: str
    counts: dict[str, dict[str, int]]


class SplitMetrics(Metrics, total=False):
    """`eval/<split>/metrics.json` (`evaluate.evaluate_run`); in `model/metrics.json` without
    the calibration bins and the confusion matrix."""

    split: str
    model_dir: str
    architecture: str
    temperature: float
    data: EvalData
    predict_seconds: float
    images_per_second: float | None
    out_of_scope: ScopeMetrics | None
    prediction_sets: SetMetrics | None


#: `model/metrics.json`: split name -> that split's metrics, and under "engines" the ONNX
#: engines' checks (`engine_check`), which is why the values are not all SplitMetrics.
ModelMetrics = dict[str, Any]


class AuditVariant(TypedDict, total=False):
    """One variant of the shortcut audit (`evaluation.audit`): how many images, the share
    refused (no white cell found, or out of scope) and answered, and the top class's accuracy
    over all of them and over the answered."""

    n: int
    refused: float
    answered: float
    accuracy: float
    answered_accuracy: float | None
    #: Only for swaps: answered swaps, and the shares of them whose label is the cells' class,
    #: the background's class, or neither.
    n_answered: int
    follows_cells: float | None
    follows_background: float | None
    follows_neither: float | None


class SwapShares(TypedDict):
    """Swaps of one class's cells: how many, answered, and what the label followed."""

    n: int
    n_answered: int
    follows_cells: float | None
    follows_background: float | None
    follows_neither: float | None


class AuditResult(TypedDict):
    """`eval/<split>/audit.json`, and `audit` in `model/metrics.json`."""

    split: str
    n_images: int
    model: str
    backend: str
    seed: int
    #: "original", "erased", "alone", "swapped", "corner" -> AuditVariant, and
    #: "swapped_per_class" -> {label: SwapShares}.
    variants: dict[str, Any]
    #: Pass marks: erased_refused, swaps_answered, swaps_follow_cells, swaps_follow_background.
    targets: dict[str, bool | None]
    seconds: float
