"""The API's response bodies as pydantic models: they check what the routes return and they
are the OpenAPI spec, so a field's description here is what a lab-system integrator reads."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, create_model

from bloodcell.predict.records import Prediction as Record

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


#: Result keys the spec marks required (each is in every result, null where its type allows);
#: every other field defaults to null, so a new record field needs nothing here.
_ALWAYS = {"path", "label", "display_name", "confidence", "probabilities", "uncertain"}
#: Typed tighter than the record: a served image always has probabilities.
_API_TYPES: dict[str, Any] = {"probabilities": dict[str, float]}


def _record_fields() -> dict[str, Any]:
    """The API fields of a result, taken from the `Prediction` record's fields (`records`)."""
    hints = get_type_hints(Record)
    out: dict[str, Any] = {}
    for f in fields(Record):
        name = f.metadata["api"]
        if name is None:  # not in an API result
            continue
        kind = _API_TYPES.get(f.name, hints[f.name])
        doc = f.metadata["doc"]
        default = Field(description=doc) if f.name in _ALWAYS else Field(None, description=doc)
        out[name or f.name] = (kind, default)
    return out


#: One result: the record's fields (`path` named `filename`) plus what only the server knows.
Prediction = create_model(
    "Prediction",
    **_record_fields(),
    timing_ms=(
        float,
        Field(
            description="Time in the server for this request: decoding, waiting for a batch, "
            "inference (and Grad-CAM)."
        ),
    ),
    heatmap_png=(
        str | None,
        Field(None, description="Grad-CAM overlay, base64 PNG (only with explain=true)."),
    ),
)


class PredictResponse(BaseModel):
    model_version: str
    engine: str = Field(description=ENGINE_DOC + " Heatmaps always come from torch.")
    results: list[Prediction]  # type: ignore[valid-type]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image, corrupt, empty or too many."},
    413: {"model": ErrorResponse, "description": "Upload or image over the size limit."},
    422: {"model": ErrorResponse, "description": "Missing or malformed fields."},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "API key missing or not valid."},
}
