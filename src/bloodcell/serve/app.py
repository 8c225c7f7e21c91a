"""The HTTP face of bloodcell: a REST API for lab systems and a one-page UI for people.

Every upload is untrusted. The request body is counted while it streams in (Content-Length is
only a hint), image dimensions are checked before any pixel is decoded, and every failure a
client can cause becomes a 4xx `{"detail": "<plain sentence>"}`, never a 500. Uploads are
decoded in the threadpool and classified by one batch worker thread (`batching.Batcher`), which
runs the model once for the images of requests that arrive together; the event loop keeps
answering (`/health` included) while the model is busy. With an API key, `/v1/*` needs it
(`auth.ApiKeyMiddleware`); CORS is off unless origins are named.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from bloodcell import __version__
from bloodcell.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from bloodcell.predict import Prediction as ImagePrediction
from bloodcell.serve.auth import ApiKeyMiddleware, bearer_scheme
from bloodcell.serve.batching import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS, Batcher
from bloodcell.serve.engine import Engine, open_engine
from bloodcell.serve.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from bloodcell.serve.schemas import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ErrorResponse,
    Health,
    ModelInfo,
    PredictResponse,
)

log = logging.getLogger("bloodcell.serve")

DEFAULT_MAX_UPLOAD_BYTES = 10_000_000
DEFAULT_MAX_FILES = 16
ONNX_FILE = "model.onnx"
CARD_PATH = "/v1/model/card"
STATIC_DIR = Path(__file__).parent / "static"


# --- untrusted input --------------------------------------------------------------------------


def decode_upload(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes as RGB, refusing oversized images before their pixels are read.

    The shared decoder's refusals are the client's problem: 413 for too many pixels, else 400.
    """
    try:
        return decode_image(data, name, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise HTTPException(413 if exc.kind == "too_large" else 400, str(exc)) from None


def plain_validation_message(errors: list[dict[str, Any]]) -> str:
    """Turn FastAPI's list of validation errors into one sentence a person can act on."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query")]
        if loc[:1] == ["files"]:
            return (
                "no images received: send one or more images as multipart/form-data "
                "file parts in the field 'files'"
            )
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'invalid value')}")
    return "invalid request: " + "; ".join(parts)


def _upload_name(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").strip() or f"upload-{index + 1}"
    return name[:255]


# --- the app ----------------------------------------------------------------------------------


def create_app(
    model_path: str | Path,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_files: int = DEFAULT_MAX_FILES,
    batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    engine: str = "auto",
) -> FastAPI:
    """Load the model now (a bad path fails before the port opens) and build the app.

    `engine` is `--engine` (auto, torch, onnx, onnx-int8); `api_key` guards `/v1/*`;
    `cors_origins` are the browser origins allowed to call the API from other sites (none: CORS
    stays off). The batch worker starts with the app's lifespan.
    """
    served = open_engine(model_path, engine)
    batcher = Batcher(served.classify, max_batch_size=batch_size, max_wait_ms=batch_wait_ms)
    limits = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_files": max_files,
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(
        title="bloodcell",
        version=__version__,
        description="Classify B-ALL peripheral blood smear images. Research use only; "
        "not a diagnosis.",
        lifespan=lifespan,
    )
    app.state.engine = served
    app.state.batcher = batcher
    # The last added runs first: CORS answers preflights and labels every answer (401s too),
    # then security headers, then the key check, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_upload_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(SecurityHeadersMiddleware)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
    _add_routes(app, served, batcher, limits, protected=bool(api_key))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _add_routes(
    app: FastAPI, engine: Engine, batcher: Batcher, limits: dict[str, int], protected: bool
) -> None:
    # With a key, the /v1 routes declare the bearer scheme in OpenAPI (ApiKeyMiddleware checks).
    auth = [Security(bearer_scheme)] if protected else []
    auth_responses = AUTH_RESPONSES if protected else {}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health", response_model=Health, summary="Is the server up with a model loaded?")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_loaded": True,
            "backend": engine.backend.kind,
            "queue": batcher.stats(),
        }

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses=auth_responses,
        dependencies=auth,
        summary="Classes, model version, metrics",
    )
    async def model() -> dict[str, Any]:
        card = CARD_PATH if engine.card and engine.card.is_file() else None
        return {**engine.info, "model_card": card, "limits": limits}

    @app.get(  # the default (JSON) response class: the 4xx answers are JSON like everywhere
        CARD_PATH,
        responses={
            200: {"content": {"text/markdown": {}}, "description": "The model card."},
            404: {"model": ErrorResponse, "description": "This model has no model card."},
            **auth_responses,
        },
        dependencies=auth,
        summary="The model card (markdown): intended use, data, metrics with intervals, limits",
    )
    async def model_card() -> PlainTextResponse:
        try:
            text = engine.card.read_text(encoding="utf-8") if engine.card else None
        except OSError:
            text = None
        if text is None:
            raise HTTPException(
                404, "this model has no model card: `bloodcell evaluate` on its run writes one"
            )
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses={**ERROR_RESPONSES, **auth_responses},
        dependencies=auth,
        summary="Classify one or more smear images",
    )
    async def predict(
        files: Annotated[
            list[UploadFile],
            File(min_length=1, description="One or more images (JPEG, PNG, BMP, TIFF, WebP)."),
        ],
        explain: Annotated[
            bool, Query(description="Add a Grad-CAM heatmap (base64 PNG) to each result.")
        ] = False,
    ) -> dict[str, Any]:
        start = time.perf_counter()
        if len(files) > limits["max_files"]:
            raise HTTPException(
                400, f"too many files: {len(files)} sent, at most {limits['max_files']} per request"
            )
        if explain and not engine.can_explain:
            raise HTTPException(
                400,
                "explanations need the torch model: serve the model directory, not a lone .onnx",
            )
        uploads = [(_upload_name(f, i), await f.read()) for i, f in enumerate(files)]

        def decode_all() -> list[tuple[str, Image.Image]]:
            pixels = limits["max_pixels"]
            return [(name, decode_upload(data, name, pixels)) for name, data in uploads]

        decoded, predictions = await batcher.submit(decode_all)
        results = [_result_dict(p) for p in predictions]
        if explain:

            def heatmaps() -> list[str | None]:
                with batcher.model_lock:  # an out-of-scope image has no class to explain
                    return [
                        None if r["out_of_scope"] else engine.heatmap(image, r["label"])
                        for (_, image), r in zip(decoded, results, strict=True)
                    ]

            for result, png in zip(results, await run_in_threadpool(heatmaps), strict=True):
                result["heatmap_png"] = png
        elapsed_ms = round((time.perf_counter() - start) * 1000, 2)
        for result in results:
            result["timing_ms"] = elapsed_ms
        return {
            "model_version": engine.info["version"],
            "engine": engine.backend.kind,
            "results": results,
        }


def _result_dict(prediction: ImagePrediction) -> dict[str, Any]:
    result = prediction.to_dict()
    result["filename"] = result.pop("path")
    return result


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": plain_validation_message(list(exc.errors()))}, 422)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error: the server could not handle this request"}, 500)
