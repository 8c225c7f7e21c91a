"""The API's response bodies as pydantic models: they check what the routes return and they
are the OpenAPI spec, so a field's description here is what a lab-system integrator reads."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, create_model

from bloodcell.predict.records import Prediction as Record

ENGINE_DOC = 'The engine that answers: "onnx-int8" or "onnx" (ONNX Runtime), or "torch".'
#: `backend` is `engine` under its first name, kept so that clients written for it still work.
BACKEND_DOC = "Deprecated: the same as `engine`, under its first name."


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
    engine: str = Field(description=ENGINE_DOC)
    backend: str = Field(description=BACKEND_DOC, json_schema_extra={"deprecated": True})
    queue: QueueStats


class ClassInfo(BaseModel):
    label: str
    display_name: str


class Limits(BaseModel):
    max_upload_bytes: int = Field(description="Largest request body, all files together.")
    max_pixels: int = Field(description="Largest image, width x height.")
    max_files: int = Field(description="Most images in one request.")


class CsvColumn(BaseModel):
    name: str = Field(description="The column's header.")
    key: str = Field(
        description="Where its value is: this key of an API result (`engine`: the response's "
        "`engine`), or of a group summary for the group columns."
    )
    kind: str = Field(
        description='How the value is written: "string" as is, "float" with 6 decimals, '
        '"bool" as true/false, "joined" as the list joined by "|", "int" as a number; '
        "empty when null."
    )
    label: str | None = Field(
        default=None, description="A per-class column: the value is `result[key][label]`."
    )


class CsvSpec(BaseModel):
    """The columns of `bloodcell predict --format csv`, so a client writes the same table."""

    columns: list[CsvColumn] = Field(
        description="One row per file, in this order. An error row fills only the file's "
        "column (`path`) and `error`."
    )
    group_columns: list[CsvColumn] = Field(
        description="One row per group (folder, case or slide): `predict --group-by-folder`."
    )


class ModelInfo(BaseModel):
    name: str
    architecture: str
    version: str = Field(description="First 12 hex digits of the sha256 of the weights file.")
    format: str
    bloodcell_version: str | None = Field(description="bloodcell version that saved the model.")
    engine: str = Field(description=ENGINE_DOC)
    backend: str = Field(description=BACKEND_DOC, json_schema_extra={"deprecated": True})
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
    csv: CsvSpec = Field(description="The CSV columns of `bloodcell predict --format csv`.")


#: Result keys the spec marks required (each is in every result, null where its type allows);
#: every other field defaults to null, so a new record field needs nothing here.
_ALWAYS = {"path", "label", "display_name", "confidence", "probabilities", "uncertain"}
#: Typed for the API: probabilities are always per label (null only for a file not read).
_API_TYPES: dict[str, Any] = {"probabilities": dict[str, float] | None}

ERROR_DOC = (
    "Why this file could not be classified (not an image, corrupt, empty, too many pixels), "
    "in plain words; null when it was. A result with an error has no answer: every field but "
    "`filename`, `error` and `timing_ms` is null."
)


def _record_fields(required: set[str] = _ALWAYS) -> dict[str, Any]:
    """The API fields of a result, taken from the `Prediction` record's fields (`records`);
    those named in `required` must be present (a null where their type allows)."""
    hints = get_type_hints(Record)
    out: dict[str, Any] = {}
    for f in fields(Record):
        name = f.metadata["api"]
        if name is None:  # not in an API result
            continue
        kind = _API_TYPES.get(f.name, hints[f.name])
        doc = f.metadata["doc"]
        default = Field(description=doc) if f.name in required else Field(None, description=doc)
        out[name or f.name] = (kind, default)
    # Each file of a batch gets its own answer, so a file that could not be read is a result
    # with an `error` (the record keeps its error out of the API: added here unless it is in).
    out.setdefault("error", (str | None, Field(None, description=ERROR_DOC)))
    return out


#: One result: the record's fields (`path` named `filename`) plus what only the server knows.
Prediction = create_model(
    "Prediction",
    **_record_fields(),
    timing_ms=(
        float,
        Field(
            description="Time in the server for the whole request (the same in each of its "
            "results, not a time per image): decoding, waiting for a batch, inference (and "
            "Grad-CAM)."
        ),
    ),
    heatmap_png=(
        str | None,
        Field(
            None,
            description="Grad-CAM overlay, base64 PNG at the image's size or at most 1024 "
            "pixels on its longer side (only with explain=true; null for a file not read or an "
            "out-of-scope image).",
        ),
    ),
    heatmap_class=(
        str | None,
        Field(
            None,
            description="The class label the heatmap explains: `explain_class` when given, "
            "else the predicted class; null without a heatmap.",
        ),
    ),
)

RESULTS_DOC = "One result per file, in the order sent; a file that could not be read has `error`."

#: One result sent back to be summarised: a result of `POST /v1/predict` as it came (only
#: `filename` is required; `timing_ms` and heatmaps are ignored), with the response's `engine`.
SummaryItem = create_model(
    "SummaryItem",
    **_record_fields(required={"path"}),
    engine=(str | None, Field(None, description=ENGINE_DOC)),
)


class SummaryRequest(BaseModel):
    """Results a client kept, e.g. the page's session, to be tabulated as `bloodcell predict`
    would tabulate the same answers."""

    results: list[SummaryItem] = Field(  # type: ignore[valid-type]
        description="Results of `POST /v1/predict`, in the order the CSV lists them. "
        "`filename` is the row's path and decides its group: the part before the last `/` "
        "(a case or slide name, e.g. `Slide 7/smear.png`), `.` without one."
    )


class Totals(BaseModel):
    """The counts of `bloodcell predict`'s closing line and JSON `summary`."""

    n_files: int
    n_predicted: int = Field(description="Files read and answered, with a class or without.")
    n_errors: int = Field(description="Files that could not be read.")
    n_uncertain: int
    n_out_of_scope: int = Field(description="Answered without a class.")
    counts: dict[str, int] = Field(description="Answers per class label.")


class GroupSummary(BaseModel):
    """One group (folder, case or slide), as `bloodcell predict --group-by-folder` writes it."""

    folder: str = Field(description='The group: the part of `filename` before its last "/".')
    n_images: int = Field(description="Images read and answered.")
    n_errors: int = Field(description="Files that could not be read.")
    n_uncertain: int
    n_out_of_scope: int
    counts: dict[str, int] = Field(description="Answers per class label.")
    mean_probabilities: dict[str, float] | None = Field(
        description="Mean probability of each class over the group's images; null when none "
        "was read."
    )


class Summary(BaseModel):
    """What `bloodcell predict` makes of the same answers: totals, per-group summaries and the
    two CSV files, so every client shows and writes the command line's tables."""

    totals: Totals
    groups: list[GroupSummary] = Field(description="One per group, sorted by `folder`.")
    csv: str = Field(description="`bloodcell predict --format csv` of the results.")
    groups_csv: str = Field(description="`--group-by-folder`'s CSV of the groups.")


class PredictResponse(BaseModel):
    model_version: str
    engine: str = Field(description=ENGINE_DOC + " Heatmaps always come from torch.")
    results: list[Prediction] = Field(description=RESULTS_DOC)  # type: ignore[valid-type]
    detail: str | None = Field(
        default=None,
        description="Null when every file was classified; otherwise which files were not, "
        "and why, in one sentence.",
    )


class FailedPredictResponse(ErrorResponse):
    """No file was classified: `detail` says why; `results` when the files were received."""

    model_version: str | None = None
    engine: str | None = None
    results: list[Prediction] | None = Field(  # type: ignore[valid-type]
        default=None,
        description=RESULTS_DOC + " Absent when the request itself was refused (too many "
        "files, an unknown `explain_class`, no heatmaps on this server).",
    )


#: How `POST /v1/predict` answers a batch, for its OpenAPI description.
PREDICT_STATUS_DOC = """Each file gets its own answer: a class, an out-of-scope answer, or an
`error` saying why that file could not be read. The status code says whether all succeeded:

- **200**: every file was read and answered, with a class or, out of scope, without one
  (`detail` is null).
- **207** (Multi-Status): some files were classified and some could not be read. `results` still
  has one entry per file, in order; check each result's `error`. `detail` names the failures.
- **400** or **413**: no file could be classified (413 when every file was over the pixel
  limit), `detail` says why, as it always has; `results` then lists the per-file errors. A request
  refused as a whole (too many files, an unknown `explain_class`, a body over the size limit)
  has only `detail`.

A client that treats only 200 as success keeps working: a batch with a bad file was refused
before (400) and is not 200 now either. A client that accepts every 2xx must read `error`."""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    207: {
        "model": PredictResponse,
        "description": "Some files classified, some not: each result has its answer or `error`.",
    },
    400: {
        "model": FailedPredictResponse,
        "description": "No file could be classified (not an image, corrupt, empty), or the "
        "request was refused (too many files, unknown class).",
    },
    413: {
        "model": FailedPredictResponse,
        "description": "Upload over the size limit, or every image over the pixel limit.",
    },
    422: {"model": ErrorResponse, "description": "Missing or malformed fields."},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "API key missing or not valid."},
}
