"""The API's response bodies as pydantic models: they check what the routes return and they
are the OpenAPI spec, so a field's description here is what a lab-system integrator reads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

ENGINE_DOC = 'The engine that answers: "onnx-int8" or "onnx" (ONNX Runtime), or "torch".'


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in plain words.")


class QueueStats(BaseModel):
    max_batch_size: int = Field(description="Most images in one model call.")
    max_wait_ms: float = Field(
        description="Longest an image waits for others that are already arriving."
    )
    queued: int = Field(description="Images waiting for the model now.")
    batches: int = Field(description="Model calls since the server started.")
    images: int = Field(description="Images classified since the server started.")
    largest_batch: int = Field(description="Most images one model call has taken so far.")


class Health(BaseModel):
    status: str = Field(description='"ok" while the server answers.')
    model_loaded: bool
    backend: str = Field(description=ENGINE_DOC)
    queue: QueueStats


class ClassInfo(BaseModel):
    label: str
    display_name: str


class Limits(BaseModel):
    max_upload_bytes: int = Field(description="Largest request body, all files together.")
    max_pixels: int = Field(description="Largest image, width x height.")
    max_files: int = Field(description="Most images in one request.")


class ModelInfo(BaseModel):
    name: str
    architecture: str
    version: str = Field(description="First 12 hex digits of the sha256 of the weights file.")
    format: str
    bloodcell_version: str | None = Field(description="bloodcell version that saved the model.")
    backend: str = Field(description=ENGINE_DOC)
    classes: list[ClassInfo]
    image_size: int
    temperature: float
    uncertain_threshold: float
    ood_threshold: float | None = Field(
        description="Above this out-of-scope score an image gets no class (null: no detector)."
    )
    conformal_coverage: float | None = Field(
        description="Coverage of the prediction sets (null: the model has none)."
    )
    explain_available: bool = Field(description="Whether `explain=true` works (torch model).")
    metrics: dict[str, Any] = Field(description="Evaluation metrics saved with the model.")
    model_card: str | None = Field(
        default=None,
        description="Path of the model card (markdown) on this server; null when the model "
        "has none.",
    )
    limits: Limits


class Prediction(BaseModel):
    filename: str
    label: str | None = Field(description="The answer; null when the image is out of scope.")
    display_name: str | None = Field(description="The answer in words; null when out of scope.")
    confidence: float | None = Field(
        description="Probability of the predicted class; null when out of scope."
    )
    probabilities: dict[str, float] = Field(
        description="Calibrated probability per class label (listed even when out of scope, "
        "where they mean little)."
    )
    uncertain: bool | None = Field(
        description="Confidence below the model's threshold: review by hand. Null when out of "
        "scope."
    )
    out_of_scope: bool | None = Field(
        default=None,
        description="True when the image is unlike the smears the model was trained on (another "
        "magnification, stain, cell type or not a smear): no class is given. Null for a model "
        "without an out-of-scope detector.",
    )
    ood_score: float | None = Field(
        default=None,
        description="Out-of-scope score (multi-layer Mahalanobis distance to the training "
        "images, 0 for a typical one; higher is farther). Above the model's `ood_threshold` "
        "the image is out of scope.",
    )
    prediction_set: list[str] | None = Field(
        default=None,
        description="Conformal prediction set: every class label the image still fits, holding "
        "the true class with the model's stated coverage (`conformal_coverage`). Null when out "
        "of scope or when the model has no sets.",
    )
    note: str | None = Field(
        default=None,
        description="Plain words for a set of two or more classes (e.g. 'Benign or Malignant "
        "Early Pre-B: ... confirm by flow cytometry') or for an out-of-scope image.",
    )
    timing_ms: float = Field(
        description="Time in the server for this request: decoding, waiting for a batch, "
        "inference (and Grad-CAM)."
    )
    heatmap_png: str | None = Field(
        default=None, description="Grad-CAM overlay, base64 PNG (only with explain=true)."
    )


class PredictResponse(BaseModel):
    model_version: str
    engine: str = Field(description=ENGINE_DOC + " Heatmaps always come from torch.")
    results: list[Prediction]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image, corrupt, empty or too many."},
    413: {"model": ErrorResponse, "description": "Upload or image over the size limit."},
    422: {"model": ErrorResponse, "description": "Missing or malformed fields."},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "API key missing or not valid."},
}
