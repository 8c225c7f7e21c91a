"""`bloodcell serve`: the web page and REST API for a model."""

from __future__ import annotations

import argparse
import sys

from bloodcell.cli.common import add_engine_arg, bounded

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_cmd(args: argparse.Namespace) -> int:
    import uvicorn

    from bloodcell.serve.app import create_app
    from bloodcell.serve.auth import api_key_from_env

    api_key = args.api_key or api_key_from_env()
    app = create_app(
        args.model,
        max_upload_bytes=int(args.max_upload_mb * 1_000_000),
        max_pixels=int(args.max_megapixels * 1_000_000),
        max_files=args.max_files,
        batch_size=args.batch_size,
        batch_wait_ms=args.batch_wait_ms,
        api_key=api_key,
        cors_origins=args.cors_origin,
        engine=args.engine,
    )
    if not api_key and args.host not in LOOPBACK:
        print(
            f"bloodcell: warning: listening on {args.host} without authentication; "
            "anyone who can reach this port can use the model (set BLOODCELL_API_KEY)",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    guard = "; /v1/* needs the API key" if api_key else ""
    print(f"bloodcell: serving {args.model} at http://{host}:{args.port}/{guard} (Ctrl+C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _add_limits(p: argparse.ArgumentParser) -> None:
    """What one request may hold and how requests are batched."""
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        metavar="MB",
        help="largest request body, all images together (default: %(default)s)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=40.0,
        metavar="MP",
        help="largest image, width x height, refused before decoding (default: %(default)s)",
    )
    p.add_argument(
        "--max-files",
        type=int,
        default=16,
        metavar="N",
        help="most images in one request (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1),
        default=32,
        metavar="N",
        help="most images in one model call, gathered from concurrent requests "
        "(default: %(default)s; 1 turns batching off)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=bounded(float, 0, 10_000),
        default=5.0,
        metavar="MS",
        help="longest the first image of a batch waits for images of other requests that "
        "are already being decoded; a lone request never waits "
        "(default: %(default)s)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="web page and REST API for a model (research use only)",
        description="Serve MODEL (a run or model directory, or an exported .onnx file) over HTTP: "
        "a page at / to drop in smear images, and GET /health, GET /v1/model, "
        "POST /v1/predict (multipart field 'files', ?explain=true for Grad-CAM), "
        "/openapi.json. ONNX Runtime is used when MODEL is an .onnx file or a current "
        "model.onnx sits beside the saved model; Grad-CAM needs the model directory. "
        "Images from requests that arrive together are classified in one batch by a "
        "worker thread (/health shows the queue). With an API key (--api-key or "
        "BLOODCELL_API_KEY), /v1/* answers 401 without 'Authorization: Bearer KEY'; /health "
        "and the page stay open, and the page asks for the key. CORS is off unless "
        "--cors-origin names origins.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory, model directory or .onnx file")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    add_engine_arg(p)
    _add_limits(p)
    p.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1/* (default: $BLOODCELL_API_KEY, "
        "else none); prefer the variable, since a command line is visible to other users",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN (e.g. https://lab.example.org) call the API from a browser; "
        "repeat for more origins (default: none, CORS off)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: %(default)s)",
    )
    p.set_defaults(func=serve_cmd)
