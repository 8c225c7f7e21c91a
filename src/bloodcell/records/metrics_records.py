"""`metrics.json`: `eval/<split>/metrics.json` (one `SplitMetrics`), and the same figures per
split in `model/metrics.json` (`records.study_records.ModelMetrics`, which also holds the
studies)."""

from __future__ import annotations

from typing import TypedDict

#: A 95% interval [low, high]; None where a resample never defined the figure.
Interval = list[float]


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


class GroupBootstrapRecord(TypedDict):
    """How a group-bootstrap interval was made, recorded beside it."""

    unit: str
    groups: int
    resamples: int
    seed: int
    level: float
    method: str


class GroupIntervals(GroupBootstrapRecord):
    """`metrics.group_bootstrap_ci`: intervals from resampling whole groups, and how."""

    accuracy: Interval | None
    macro_f1: Interval | None
    recall: dict[str, Interval | None]
    sensitivity: Interval | None
    specificity: Interval | None
    ece: Interval | None


class GroupMean(GroupBootstrapRecord):
    """`metrics.group_bootstrap_mean`: a mean over images with its group-bootstrap interval."""

    mean: float
    ci95: Interval | None


class CalibrationBin(TypedDict, total=False):
    """One reliability bin (lower, upper]; accuracy and confidence only when it holds images."""

    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float


class Figures(TypedDict):
    """The figures of one set of predictions that every report shares, whatever its
    intervals resample (images in `Metrics`, groups in `records.study_records.CvMetrics`)."""

    n: int
    labels: list[str]
    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    cohen_kappa: float
    per_class: dict[str, ClassMetrics]
    roc_auc: RocAuc
    clinical: ClinicalMetrics
    ece: float
    confusion_matrix: list[list[int]]


class Metrics(Figures):
    """`metrics.compute_metrics`: every figure of one set of predictions."""

    ci95: ImageIntervals
    bootstrap: BootstrapRecord
    calibration_bins: list[CalibrationBin]


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
    """`eval/<split>/metrics.json` (`workflows.evaluate_job.evaluate_run`); in `model/metrics.json`
    without the calibration bins and the confusion matrix."""

    split: str
    model_dir: str
    architecture: str
    temperature: float
    data: EvalData
    predict_seconds: float
    images_per_second: float | None
    out_of_scope: ScopeMetrics | None
    prediction_sets: SetMetrics | None
