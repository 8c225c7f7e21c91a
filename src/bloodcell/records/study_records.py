"""What the studies of a trained model write: the shortcut audit (`audit.json`), robustness
(`robustness.json`), the out-of-scope folders (`ood.json`), the ONNX engines' checks (`engines`
in `model/metrics.json`, which `ModelMetrics` describes whole) and cross-validation (`cv.json`,
`protocols.json`)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from bloodcell.records.metrics_records import Figures, GroupIntervals, Interval, SplitMetrics

# --- the shortcut audit ---------------------------------------------------------------------------


class AuditVariant(TypedDict, total=False):
    """One variant of the shortcut audit (`evaluation.shortcut_audit`): how many images, the share
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
    #: Only for recoloured cells: the shares whose label is the cells' own class (their
    #: shape) or the colour donor's class.
    follows_shape: float | None
    follows_colour: float | None


class SwapShares(TypedDict, total=False):
    """Swaps (or recolourings) of one class's cells: how many, answered, and what the label
    followed: for swaps the cells or the background, for recolourings the shape or the
    colour."""

    n: int
    n_answered: int
    follows_cells: float | None
    follows_background: float | None
    follows_shape: float | None
    follows_colour: float | None
    follows_neither: float | None


#: The audit's variants (`evaluation.audit.summarise`), also what cross-validation pools over
#: folds: "original", "erased", "alone", "swapped", "corner", "recoloured", "grey", "hue_5" ...
#: "hue_30" -> AuditVariant, and "swapped_per_class" / "recoloured_per_class" ->
#: {label: SwapShares}. The value's type depends on the key's pattern, which a TypedDict
#: cannot say of computed keys, hence Any.
AuditVariants = dict[str, Any]


class AuditSummary(TypedDict):
    """What the audit's report reads."""

    split: str
    n_images: int
    variants: AuditVariants
    #: Pass marks: erased_refused, swaps_answered, swaps_follow_cells, swaps_follow_background,
    #: recoloured_follow_shape, recoloured_follow_colour, hue_20_accuracy.
    targets: dict[str, bool | None]


class AuditResult(AuditSummary):
    """`eval/<split>/audit.json`, and `audit` in `model/metrics.json`."""

    model: str
    backend: str
    seed: int
    seconds: float


# --- robustness -----------------------------------------------------------------------------------


class ConditionScores(TypedDict):
    """`robustness.score` of one condition, and its share out of scope."""

    accuracy: float
    accuracy_ci95: Interval | None
    macro_f1: float
    balanced_accuracy: float
    sensitivity: float | None
    specificity: float | None
    out_of_scope_rate: NotRequired[float | None]


class RobustnessRow(ConditionScores):
    """One evaluated condition (`robustness.score_conditions`): its setting and scores."""

    corruption: str
    severity: int
    parameter: Any
    setting: str
    #: Clean accuracy minus this row's; only for corrupted rows.
    drop: NotRequired[float]


class CorruptionInfo(TypedDict):
    description: str
    levels: list[Any]


class StudyData(TypedDict):
    """Which manifest and data folder a study read."""

    manifest: str
    data_root: str


class RobustnessSummary(TypedDict):
    """`robustness.summarise`: clean against corrupted."""

    target_accuracy: float
    middle_severity: int
    clean: RobustnessRow
    results: list[RobustnessRow]
    corruptions: dict[str, CorruptionInfo]
    worst_middle: RobustnessRow | None
    below_target_middle: list[str]


class RobustnessResult(RobustnessSummary):
    """`eval/<split>/robustness.json` (`workflows.evaluate_job.evaluate_robustness`): the summary
    with what it was measured on."""

    split: str
    n: int
    model: str
    backend: str
    architecture: str
    seed: int
    data: StudyData
    seconds: float
    #: Where it was written: returned, not in the file.
    out_dir: NotRequired[str]


# --- out-of-scope folders -------------------------------------------------------------------------


class InScopeScores(TypedDict):
    n: int
    flagged: int
    scores: list[float]


class ScopeSeparation(TypedDict):
    """`metrics.scope_separation`: how well a score separates other images from in-scope ones."""

    auroc: float | None
    fpr_at_95_tpr: float | None


class FolderResult(TypedDict):
    """One folder of other images (`scope.folder_result`)."""

    folder: str
    n: int
    unreadable: list[str]
    #: Refused, for any reason (`models.refusal`), and how many for each reason.
    flagged: int
    flagged_rate: float | None
    reasons: NotRequired[dict[str, int]]
    #: The class given to each answered image, counted.
    answered_labels: NotRequired[dict[str, int]]
    #: For a folder trained on as outliers: the files training held back.
    held_out: NotRequired[HeldOut]
    auroc: float | None
    fpr_at_95_tpr: float | None
    scores: list[float]


class HeldOut(TypedDict):
    """Refusals over the files of an outlier folder that training held back."""

    n: int
    flagged: int
    flagged_rate: float | None


class ScopeFoldersResult(TypedDict):
    """`eval/ood/ood.json` (`workflows.evaluate_job.evaluate_scope_folders`); `out_dir` is
    returned, not written."""

    model: str
    backend: str
    threshold: float
    split: str
    in_scope: InScopeScores
    folders: list[FolderResult]
    out_dir: NotRequired[str]


# --- the ONNX engines' checks ---------------------------------------------------------------------


class EngineComparison(TypedDict, total=False):
    """An engine's labels against its reference's on one split (`check.compare`), and how many
    images change between in and out of scope (with a detector)."""

    n: int
    agreement: float | None
    labels_changed: int
    accuracy: float | None
    reference_accuracy: float | None
    extra_errors: int
    out_of_scope: int
    scope_changed: int
    #: Images whose answer (a class, or a refusal) differs from the reference's.
    answers_changed: int


class EngineScope(TypedDict):
    acceptance: float
    threshold: float


class EngineCheck(TypedDict, total=False):
    """One ONNX file's check (`check.export_engines`)."""

    file: str
    bytes: int
    reference: str
    weights_sha256: str
    val: EngineComparison
    test: EngineComparison
    verified: bool
    #: int8 only: its own out-of-scope threshold.
    ood: EngineScope
    deleted: bool


#: `engines` in `model/metrics.json`: the tolerance, the split checked on, and per engine
#: ("onnx", "onnx-int8") its check.
EngineRecords = TypedDict(
    "EngineRecords",
    {"tolerance": str, "checked_on": str, "onnx": EngineCheck, "onnx-int8": EngineCheck},
    total=False,
)


class Quantization(TypedDict):
    """How an int8 file was quantised (`onnx.quantize_int8`); in its ONNX metadata too."""

    dtype: str
    method: str
    #: Static quantisation only.
    calibration_images: NotRequired[int]


class Int8Accuracy(TypedDict):
    """`onnx.compare_accuracy`: fp32 and int8 files on one split."""

    split: str
    n: int
    accuracy_fp32: float
    accuracy_int8: float
    accuracy_change: float
    agreement: float


class ExportSummary(TypedDict):
    """What `onnx.export_onnx` returns: the files written and their sizes; with int8, how it
    was quantised and (when the test split was found) its accuracy against fp32."""

    fp32: str
    fp32_bytes: int
    path: str
    int8_bytes: NotRequired[int]
    quantization: NotRequired[Quantization]
    accuracy: NotRequired[Int8Accuracy]


# --- model/metrics.json ---------------------------------------------------------------------------


class ModelMetrics(TypedDict, total=False):
    """`model/metrics.json`: each evaluated split's metrics (without the calibration bins and
    the confusion matrix), the ONNX engines' checks (`check.export_engines`) and the audit."""

    train: SplitMetrics
    val: SplitMetrics
    test: SplitMetrics
    engines: EngineRecords
    audit: AuditResult


# --- cross-validation -----------------------------------------------------------------------------


class CvMetrics(Figures):
    """`cv.cv_metrics`: `metrics.compute_metrics` with intervals over groups, not images."""

    ci95: GroupIntervals


class CvFold(CvMetrics):
    fold: int
    manifest: str
    manifest_sha256: str
    counts: dict[str, dict[str, int]]


class Spread(TypedDict):
    mean: float
    sd: float
    min: float
    max: float


class CvSeed(TypedDict):
    """One seed's folds, pooled figures and pooled audit (None unless every fold has one)."""

    seed: int
    folds: list[CvFold]
    pooled: CvMetrics
    audit: AuditVariants | None
    fold_accuracy: Spread


class CvData(TypedDict):
    data_root: str
    images: int
    unreadable: int
    ci_unit: str
    ci_groups: int


class CvSettingsRecord(TypedDict):
    """`evaluation.cv.CVSettings` as saved."""

    folds: int
    grouping: str
    block_size: int | None
    val_fraction: float
    seeds: list[int]
    calibrate: bool
    audit: bool


class CvResult(TypedDict):
    """`cv.json` (`workflows.cv_job.run_cv`)."""

    name: str
    settings: CvSettingsRecord
    recipe: str
    #: The TrainConfig's fields.
    config: dict[str, object]
    data: CvData
    seeds: list[CvSeed]
    folds_trained_now: int
    seconds_now: float
    #: With more than one seed: accuracy_mean, accuracy_sd, accuracy_min, accuracy_max.
    over_seeds: NotRequired[dict[str, float]]


class ProtocolRow(TypedDict):
    """One protocol of the leakage study, against (a), the random image-level split."""

    protocol: str
    description: str
    accuracy: float
    accuracy_ci95: Interval | None
    difference_vs_image: float
    difference_ci95: Interval | None
    macro_f1: float
    report: str


class ProtocolBootstrap(TypedDict):
    """How the protocols' paired intervals were made."""

    unit: str
    groups: int
    resamples: int
    seed: int
    method: str


class ProtocolsResult(TypedDict):
    """`protocols.json` (`workflows.cv_job.compare_protocols`)."""

    folds: int
    seeds: list[int]
    block_size: int
    recipe: str
    images: int
    bootstrap: ProtocolBootstrap
    protocols: list[ProtocolRow]
