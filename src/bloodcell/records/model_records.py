"""What a saved model and its training run record: `model/config.json` (`ModelConfig`),
`train_config.json` (`TrainConfigRecord`) and `train_summary.json` (`TrainSummary`)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

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


class CalibrationResult(CalibrationRecord):
    """What `calibrate.calibrate_run` returns: the record and the prediction sets' coverage."""

    coverage: float


class ConformalRecord(TypedDict):
    """`models.conformal.ConformalSets.to_config`."""

    method: str
    coverage: float
    scores: list[float]
    #: `models.conformal.quantile_of(scores, coverage)`; absent in models calibrated before it.
    quantile: NotRequired[float]


class ScopeDetectorRecord(TypedDict):
    """`models.scope_detector.ScopeDetector.to_config`."""

    method: str
    layers: list[Any]
    acceptance: float
    threshold: float
    blank_std: float
    file: str


class OutlierRecord(TypedDict):
    """The outlier folders a model trained on (`train.outliers`) and how many files of them
    training used and held back."""

    folders: list[str]
    share: float
    trained: int
    held_out: int


class CellGateRecord(TypedDict):
    """`models.cell_gate.CellGate.to_config`, with the outliers it was trained on."""

    method: str
    threshold: float
    acceptance: float
    outliers: NotRequired[OutlierRecord]


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
    training: dict[str, object]
    data: DataRecord
    versions: dict[str, str]
    calibration: CalibrationRecord
    conformal: ConformalRecord
    ood: ScopeDetectorRecord
    cell_gate: CellGateRecord


class TrainConfigRecord(TypedDict):
    """`RUN/train_config.json`: written when a run starts, read back by `--resume`."""

    config: dict[str, Any]
    data: DataRecord
    started: str


class DataStep(TypedDict):
    """`data` in `RUN/run_summary.json` (`workflows.run.prepare_data`): what was found, what
    was readable, and where the verification, manifest and figures went."""

    layout: str
    files: int
    readable: int
    unreadable: int
    verify: str
    manifest: str
    figures: list[str]


class TrainSeconds(TypedDict):
    """How long caching the frozen part's outputs and fitting took."""

    feature_seconds: float
    fit_seconds: float


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
