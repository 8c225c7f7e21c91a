"""What `bloodcell predict` writes besides the predictions themselves (whose fields are the
`predict.records.Prediction` dataclass): the model it ran (`ModelSummary`), the output's head
(`OutputMeta`), a folder's summary (`FolderGroup`) and the run's (`RunTotals`)."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from bloodcell.records.model_records import CellGateRecord, ScopeDetectorRecord
from bloodcell.records.study_records import Quantization


class ModelSummary(TypedDict):
    """`Backend.describe`: the model that answered, for reports, JSON output and the server."""

    path: str
    engine: str
    #: Deprecated: the same as `engine`, under its first name.
    backend: str
    architecture: str
    labels: list[str]
    temperature: float
    uncertain_threshold: float
    image_size: int
    ood: ScopeDetectorRecord | None
    conformal_coverage: float | None
    cell_gate: CellGateRecord | None
    #: ONNX files only: how the file was quantised (None for fp32).
    quantization: NotRequired[Quantization | None]


class OutputMeta(TypedDict):
    """The head of `predict --format json` (and the Parquet schema's `bloodcell` metadata)."""

    model: ModelSummary
    tta: bool
    uncertain_threshold: float


class FolderGroup(TypedDict):
    """One folder's summary (`--group-by-folder`): counts, and the mean probability of each
    class over its answered images (None when none was)."""

    folder: str
    n_images: int
    n_errors: int
    n_uncertain: int
    n_out_of_scope: int
    counts: dict[str, int]
    mean_probabilities: dict[str, float] | None


class RunTotals(TypedDict):
    """`summary` of `predict --format json`: the whole run's counts."""

    n_files: int
    n_predicted: int
    n_errors: int
    n_uncertain: int
    n_out_of_scope: int
    counts: dict[str, int]
