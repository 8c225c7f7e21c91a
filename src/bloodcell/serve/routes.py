"""The routes: the page, health and model facts, classification of untrusted uploads, and the
command line's tables of results a client kept (`summary`).

Uploads are decoded in the threadpool (dimensions checked before any pixel is read) and
classified by the batch worker; Grad-CAM runs under the batcher's model lock so it never shares
the model with a batch. Each file of a batch gets its own answer: a file that cannot be read
becomes a result with an `error` and the others are classified (`schemas.PREDICT_STATUS_DOC`
says which status code a batch gets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, HTTPException, Query, Response, Security, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.predict import Prediction as ImagePrediction
from bloodcell.reporting.markdown import to_html
from bloodcell.serve.auth import bearer_scheme
from bloodcell.serve.batching import Batcher
from bloodcell.serve.csv_spec import csv_spec
from bloodcell.serve.schemas import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    PREDICT_STATUS_DOC,
    ErrorResponse,
    Health,
    ModelInfo,
    PredictResponse,
    Summary,
    SummaryRequest,
)
from bloodcell.serve.served_model import ServedModel, Upload
from bloodcell.serve.summary import SummaryError, SummaryRecord, summarize

CARD_PATH = "/v1/model/card"
#: The card's own `#` title becomes an <h3> inside the page, under its <h1> and <h2>s.
CARD_HEADING_OFFSET = 2
STATIC_DIR = Path(__file__).parent / "static"


def add_routes(
    app: FastAPI, served: ServedModel, batcher: Batcher, limits: dict[str, int], protected: bool
) -> None:
    """Every route, in the order the OpenAPI spec lists them, then the page's static files."""
    # With a key, the /v1 routes declare the bearer scheme in OpenAPI (ApiKeyMiddleware checks).
    auth = [Security(bearer_scheme)] if protected else []
    wiring = _Wiring(served, batcher, limits, auth, AUTH_RESPONSES if protected else {})
    _add_page_route(app)
    _add_model_routes(app, wiring)
    _add_predict_route(app, wiring)
    _add_summary_route(app, wiring)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@dataclass(frozen=True)
class _Wiring:
    """What the routes share: the model, the batch worker, the upload limits, and the bearer
    dependency with its OpenAPI answers (both empty without a key)."""

    served: ServedModel
    batcher: Batcher
    limits: dict[str, int]
    auth: list[Any]
    auth_responses: dict[int | str, dict[str, Any]]


def _add_page_route(app: FastAPI) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")


def _add_model_routes(app: FastAPI, wiring: _Wiring) -> None:
    """`/health` (always open), `/v1/model` and the model card."""
    served, batcher, limits = wiring.served, wiring.batcher, wiring.limits
    auth, auth_responses = wiring.auth, wiring.auth_responses

    @app.get("/health", response_model=Health, summary="Is the server up with a model loaded?")
    async def health() -> Health:
        engine = served.backend.engine
        return Health.model_validate(
            {
                "status": "ok",
                "model_loaded": True,
                "engine": engine,
                "backend": engine,  # deprecated: `engine`
                "queue": batcher.stats(),
            }
        )

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses=auth_responses,
        dependencies=auth,
        summary="Classes, model version, metrics",
    )
    async def model() -> ModelInfo:
        card = CARD_PATH if served.card and served.card.is_file() else None
        return ModelInfo.model_validate(
            {**served.info, "model_card": card, "limits": limits, "csv": csv}
        )

    csv = csv_spec(served.backend.labels)

    @app.get(  # the default (JSON) response class: the 4xx answers are JSON like everywhere
        CARD_PATH,
        responses={
            200: {
                "content": {"text/markdown": {}, "text/html": {}},
                "description": "The model card: markdown, or with format=html an HTML fragment.",
            },
            404: {"model": ErrorResponse, "description": "This model has no model card."},
            422: {"model": ErrorResponse, "description": "An unknown format."},
            **auth_responses,
        },
        dependencies=auth,
        summary="The model card (markdown): intended use, data, metrics with intervals, limits",
    )
    async def model_card(
        format: Annotated[
            Literal["markdown", "html"],
            Query(
                description="markdown (the file as saved, front matter included) or html (a "
                "fragment to put into a page: no front matter, headings from <h3>, markup in "
                "the text escaped)."
            ),
        ] = "markdown",
    ) -> Response:
        try:
            text = served.card.read_text(encoding="utf-8") if served.card else None
        except OSError:
            text = None
        if text is None:
            raise HTTPException(
                404, "this model has no model card: `bloodcell evaluate` on its run writes one"
            )
        if format == "html":
            return HTMLResponse(to_html(text, heading_offset=CARD_HEADING_OFFSET))
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


def _add_predict_route(app: FastAPI, wiring: _Wiring) -> None:
    """`POST /v1/predict`: every file of a batch answered on its own."""
    served, batcher, limits = wiring.served, wiring.batcher, wiring.limits
    auth, auth_responses = wiring.auth, wiring.auth_responses
    labels = list(served.backend.labels)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses={**ERROR_RESPONSES, **auth_responses},
        dependencies=auth,
        summary="Classify one or more smear images",
        description=PREDICT_STATUS_DOC,
    )
    async def predict(
        response: Response,
        files: Annotated[
            list[UploadFile],
            File(min_length=1, description="One or more images (JPEG, PNG, BMP, TIFF, WebP)."),
        ],
        explain: Annotated[
            bool, Query(description="Add a Grad-CAM heatmap (base64 PNG) to each result.")
        ] = False,
        explain_class: Annotated[
            str | None,
            Query(
                description="The class label the heatmaps explain (one of the model's labels; "
                "default: each image's predicted class). Implies explain=true.",
                max_length=64,
            ),
        ] = None,
        cell_guard: Annotated[
            bool,
            Query(
                description="Refuse an image in which the white-cell finder sees no white cell "
                "(out_of_scope true, reason 'no white cell found'); false answers it anyway."
            ),
        ] = True,
    ) -> PredictResponse:
        start = time.perf_counter()
        if len(files) > limits["max_files"]:
            raise HTTPException(
                400, f"too many files: {len(files)} sent, at most {limits['max_files']} per request"
            )
        if explain_class is not None:
            if explain_class not in labels:
                raise HTTPException(
                    400,
                    f"unknown class {explain_class!r} for explain_class: one of "
                    + ", ".join(labels),
                )
            explain = True
        if explain and not served.can_explain:
            raise HTTPException(
                400,
                "explanations need the torch model: serve the model directory, not a lone .onnx",
            )
        uploads = [(_upload_name(f, i), await f.read()) for i, f in enumerate(files)]
        failures: dict[int, ImageDecodeError] = {}

        def decode_all() -> list[Upload]:
            """The images that decode, made ready for the model in this request's thread; each
            one that does not decode is kept in `failures`."""
            good = []
            for i, (name, data) in enumerate(uploads):
                try:
                    image = decode_image(data, name, max_pixels=limits["max_pixels"])
                    good.append(served.prepare(name, image, cell_guard))
                except ImageDecodeError as exc:
                    failures[i] = exc
            return good

        decoded, predictions = await batcher.submit(decode_all)
        classified = [_result_dict(p) for p in predictions]
        if explain:
            await _add_heatmaps(served, batcher, decoded, predictions, classified, explain_class)
        answers = iter(classified)
        results = [
            _error_dict(name, failures[i]) if i in failures else next(answers)
            for i, (name, _) in enumerate(uploads)
        ]
        elapsed_ms = round((time.perf_counter() - start) * 1000, 2)
        for result in results:
            result["timing_ms"] = elapsed_ms
        response.status_code, detail = _batch_status(failures, len(uploads))
        return PredictResponse(
            model_version=served.info["version"],
            engine=served.backend.engine,
            results=results,
            detail=detail,
        )


def _add_summary_route(app: FastAPI, wiring: _Wiring) -> None:
    """`POST /v1/summary`: kept results tabulated as `bloodcell predict` tabulates them."""
    served = wiring.served

    @app.post(
        "/v1/summary",
        response_model=Summary,
        responses={
            400: {"model": ErrorResponse, "description": "A result that cannot be tabulated."},
            422: {"model": ErrorResponse, "description": "Missing or malformed fields."},
            **wiring.auth_responses,
        },
        dependencies=wiring.auth,
        summary="Totals, per-case summaries and the CSV files of results already received",
        description="Send back results of `POST /v1/predict` (a session's, across requests); "
        "the answer is what `bloodcell predict --group-by-folder --format csv` makes of the "
        "same answers. Nothing is classified and nothing is kept.",
    )
    async def summary(body: SummaryRequest) -> SummaryRecord:
        results = [r.model_dump() for r in body.results]  # type: ignore[attr-defined]
        try:
            return await run_in_threadpool(summarize, results, served.backend)
        except SummaryError as exc:
            raise HTTPException(400, str(exc)) from exc


def _batch_status(failures: dict[int, ImageDecodeError], n_files: int) -> tuple[int, str | None]:
    """200 when every file was classified, 207 when some were, else 400 (413: all too large)."""
    if not failures:
        return 200, None
    errors = [str(failures[i]) for i in sorted(failures)]
    if len(failures) < n_files:
        return 207, f"{len(failures)} of {n_files} files could not be classified: " + "; ".join(
            errors
        )
    too_large = all(e.kind == "too_large" for e in failures.values())
    if n_files == 1:
        return (413 if too_large else 400), errors[0]
    return (413 if too_large else 400), "no file could be classified: " + "; ".join(errors)


async def _add_heatmaps(
    served: ServedModel,
    batcher: Batcher,
    decoded: list[Upload],
    predictions: list[ImagePrediction],
    results: list[dict[str, object]],
    target: str | None,
) -> None:
    """Put a Grad-CAM heatmap into each result (the answer to each of `decoded`, in
    `predictions`), computed in the threadpool under the lock: of `target` when given, else of
    the predicted class."""

    def explained(p: ImagePrediction) -> str | None:
        """The class to explain; None for an image without a class (out of scope)."""
        return None if p.out_of_scope or p.label is None else target or p.label

    def heatmaps() -> list[str | None]:
        with batcher.model_lock:
            return [
                None if (cls := explained(p)) is None else served.heatmap(upload.image, cls)
                for upload, p in zip(decoded, predictions, strict=True)
            ]

    pngs = await run_in_threadpool(heatmaps)
    for result, p, png in zip(results, predictions, pngs, strict=True):
        result["heatmap_png"] = png
        result["heatmap_class"] = None if png is None else explained(p)


def _upload_name(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").strip() or f"upload-{index + 1}"
    return name[:255]


def _result_dict(prediction: ImagePrediction) -> dict[str, object]:
    result = prediction.to_dict()
    result["filename"] = result.pop("path")
    return result


def _error_dict(name: str, exc: ImageDecodeError) -> dict[str, object]:
    """The result of a file that could not be read: its name and why (the reason alone, as
    the file is named beside it); every answer field null."""
    return _result_dict(ImagePrediction(path=name, error=exc.reason))
