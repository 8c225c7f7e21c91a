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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from bloodcell._version import __version__
from bloodcell.data.decode import DEFAULT_MAX_PIXELS
from bloodcell.serve.auth import ApiKeyMiddleware
from bloodcell.serve.batching import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS, Batcher
from bloodcell.serve.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from bloodcell.serve.routes import add_routes
from bloodcell.serve.served_model import open_served_model

log = logging.getLogger("bloodcell.serve")

DEFAULT_MAX_UPLOAD_BYTES = 10_000_000
DEFAULT_MAX_FILES = 16


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
    served = open_served_model(model_path, engine)
    batcher = Batcher(served.classify, max_batch_size=batch_size, max_wait_ms=batch_wait_ms)
    limits = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_files": max_files,
    }
    app = FastAPI(
        title="bloodcell",
        version=__version__,
        description="Classify B-ALL peripheral blood smear images. Research use only; "
        "not a diagnosis.",
        lifespan=_lifespan(batcher),
    )
    app.state.served = served
    app.state.batcher = batcher
    _add_middleware(app, max_upload_bytes, api_key, cors_origins)
    _add_error_handlers(app)
    add_routes(app, served, batcher, limits, protected=bool(api_key))
    return app


def _lifespan(batcher: Batcher) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The batch worker thread lives as long as the app serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    return lifespan


def _add_middleware(
    app: FastAPI, max_upload_bytes: int, api_key: str | None, cors_origins: Sequence[str]
) -> None:
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


# --- errors: every failure a client can cause is a 4xx with one plain sentence ---------------


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected_error)


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


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": plain_validation_message(list(exc.errors()))}, 422)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error: the server could not handle this request"}, 500)
