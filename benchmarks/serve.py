"""Benchmark `bloodcell serve`: requests/s and p50/p95 latency of single-image /v1/predict.

Not a test. Starts the real server (`python -m bloodcell.cli serve`) on 127.0.0.1, sends a
bounded number of requests with one 224x224 JPEG each, at each concurrency asked for, and
prints one line per (engine, concurrency). With --model the server runs each `--engine` asked
for (default auto: the fastest checked engine in the model directory). Without --model it saves
a randomly initialised 224-px MobileNetV2 (speed does not depend on the weights) and, for the
onnx backend, exports `model.onnx` beside it and serves it with `--engine onnx`.

The server batches requests that arrive together (--batch-size and --batch-wait-ms are passed
on to it); each line also gives the mean images per model call, from the counters in /health,
and how long /health took to answer while the load ran (polled every 50 ms).

    .venv/bin/python benchmarks/serve.py --requests 200 --concurrency 1 4 16
    .venv/bin/python benchmarks/serve.py --model RUN --image SMEAR.jpg
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def smear_jpeg(size: int = 224, seed: int = 0) -> bytes:
    """A noisy background with one dark disc: the shape and byte size of a dataset image."""
    rng = np.random.default_rng(seed)
    img = rng.integers(180, 240, size=(size, size, 3), dtype=np.uint8)
    yy, xx = np.ogrid[:size, :size]
    img[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 5) ** 2] = (120, 60, 160)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_model(root: Path, onnx: bool) -> Path:
    from bloodcell.data.preprocess import Preprocess
    from bloodcell.models import registry, saved

    model = registry.create_model("mobilenet_v2", pretrained=False)
    out = saved.save_model(model, root / "model", "mobilenet_v2", Preprocess(image_size=224))
    if onnx:
        from bloodcell.export.onnx import export_onnx

        export_onnx(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, options: list[str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "bloodcell.cli",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *options,
    ]
    proc = subprocess.Popen(cmd, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


async def run_load(url: str, image: bytes, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Send n requests, `concurrency` in flight; return wall seconds and per-request latencies."""
    latencies: list[float] = []
    todo = iter(range(n))
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def worker() -> None:
            for _ in todo:
                start = time.perf_counter()
                r = await client.post(
                    "/v1/predict", files=[("files", ("smear.jpg", image, "image/jpeg"))]
                )
                latencies.append(time.perf_counter() - start)
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def run_load_watching_health(
    url: str, image: bytes, n: int, concurrency: int
) -> tuple[float, list[float], list[float]]:
    """`run_load`, while a separate connection times GET /health every 50 ms."""
    health: list[float] = []
    load = asyncio.ensure_future(run_load(url, image, n, concurrency))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not load.done():
            start = time.perf_counter()
            (await client.get("/health")).raise_for_status()
            health.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)
    wall, latencies = await load
    return wall, latencies, health


def queue_counters(url: str) -> tuple[int, int]:
    queue = httpx.get(f"{url}/health").json()["queue"]
    return queue["batches"], queue["images"]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench(model: Path, args: argparse.Namespace, image: bytes, engine: str) -> list[dict]:
    port = free_port()
    options = ["--batch-size", str(args.batch_size), "--batch-wait-ms", str(args.batch_wait_ms)]
    options += ["--engine", engine]
    proc = start_server(model, port, options)
    url = f"http://127.0.0.1:{port}"
    try:
        backend = httpx.get(f"{url}/health").json()["backend"]
        asyncio.run(run_load(url, image, args.warmup, 2))
        rows = []
        for c in args.concurrency:
            batches, images = queue_counters(url)
            wall, lat, health = asyncio.run(run_load_watching_health(url, image, args.requests, c))
            batches_after, images_after = queue_counters(url)
            row = {
                "backend": backend,
                "concurrency": c,
                "requests": args.requests,
                "req_per_s": round(args.requests / wall, 1),
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p95_ms": round(percentile(lat, 95) * 1000, 1),
                "mean_batch": round((images_after - images) / max(1, batches_after - batches), 1),
                "health_p50_ms": round(statistics.median(health) * 1000, 1),
                "health_max_ms": round(max(health) * 1000, 1),
            }
            print(
                f"{backend:>9}  concurrency {c:>3}: {row['req_per_s']:7.1f} req/s   "
                f"p50 {row['p50_ms']:7.1f} ms   p95 {row['p95_ms']:7.1f} ms   "
                f"batch {row['mean_batch']:4.1f}   /health p50 {row['health_p50_ms']:5.1f} ms "
                f"max {row['health_max_ms']:6.1f} ms",
                flush=True,
            )
            rows.append(row)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="model/run dir or .onnx (default: random 224 px)")
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "both"],
        default="both",
        help="with the default model: which engine(s) to serve (default: both)",
    )
    p.add_argument(
        "--engine",
        nargs="+",
        default=["auto"],
        choices=["auto", "torch", "onnx", "onnx-int8"],
        help="with --model: the server's --engine, one run each (default: auto)",
    )
    p.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32, help="server --batch-size (default 32)")
    p.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="server --batch-wait-ms (default 5)"
    )
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument(
        "--image",
        type=Path,
        help="send this file in every request (default: a synthetic 224-px JPEG); a real smear "
        "makes the white-cell finder and the scale step do their real work",
    )
    args = p.parse_args()
    image = args.image.read_bytes() if args.image else smear_jpeg()
    print(f"{os.cpu_count()} CPUs; image {len(image)} bytes; {args.requests} requests per level")
    rows: list[dict] = []
    if args.model:
        for engine in args.engine:
            rows += bench(args.model, args, image, engine)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bloodcell-bench-"))
        try:
            if args.backend in ("torch", "both"):
                rows += bench(make_model(tmp / "torch", onnx=False), args, image, "torch")
            if args.backend in ("onnx", "both"):
                rows += bench(make_model(tmp / "onnx", onnx=True), args, image, "onnx")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
