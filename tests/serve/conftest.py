"""Fixtures for the serve tests: one tiny real model and one real server, built once.

The model is a randomly initialised MobileNetV2 at 64 px: real code paths (torch, Grad-CAM,
ONNX export), a fraction of a second per request on a contended 2-core CPU.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.conftest import synthetic_image

from bloodcell.data.preprocess import Preprocess
from bloodcell.models import registry, saved

#: Saved with the model, keyed by split as `bloodcell evaluate` does; the NaN checks that an
#: undefined metric does not break JSON.
METRICS = {"test": {"n": 40, "accuracy": 0.5, "macro_f1": 0.4, "roc_auc": float("nan")}}


def png_bytes(label: str = "benign", seed: int = 0, size: int = 64, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    synthetic_image(label, seed, size).save(buf, format=fmt)
    return buf.getvalue()


def image_part(name: str = "cell.png", data: bytes | None = None) -> tuple[str, tuple]:
    """One multipart part in the field the API expects."""
    return ("files", (name, png_bytes() if data is None else data, "image/png"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = registry.create_model("mobilenet_v2", pretrained=False)
    out = tmp_path_factory.mktemp("serve") / "model"
    return saved.save_model(
        model, out, "mobilenet_v2", Preprocess(image_size=64), metrics=dict(METRICS)
    )


@pytest.fixture(scope="session")
def client(model_dir: Path) -> Iterator[TestClient]:
    from bloodcell.serve.app import create_app

    with TestClient(create_app(model_dir)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    pid: int

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


@contextmanager
def serve_process(
    model: Path, log_dir: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """`bloodcell serve MODEL OPTIONS...` in a subprocess on a free loopback port."""
    port = free_port()
    log = log_dir / "server.log"
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
    # A key in the developer's environment must not reach servers meant to be open.
    base_env = {k: v for k, v in os.environ.items() if k != "BLOODCELL_API_KEY"}
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=base_env | (env or {})
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield LiveServer(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def live_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`bloodcell serve` with the default options."""
    with serve_process(model_dir, tmp_path_factory.mktemp("serve-log")) as server:
        yield server


#: The key of `secured_server`, given through the environment as a deployment would.
API_KEY = "test-key-Zq7~+/="
#: The one origin `secured_server` lets browsers call it from.
ALLOWED_ORIGIN = "http://lab.example:8080"


@pytest.fixture(scope="session")
def secured_server(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """`bloodcell serve` with an API key (BLOODCELL_API_KEY) and one CORS origin."""
    log_dir = tmp_path_factory.mktemp("secured-log")
    options = ("--cors-origin", ALLOWED_ORIGIN)
    with serve_process(model_dir, log_dir, *options, env={"BLOODCELL_API_KEY": API_KEY}) as s:
        yield s


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not up after {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def scoped_model_dir() -> Path:
    """A model with an out-of-scope detector and prediction sets (as training leaves it)."""
    from tests.models import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def scoped_client(scoped_model_dir: Path) -> Iterator[TestClient]:
    from bloodcell.serve.app import create_app

    with TestClient(create_app(scoped_model_dir)) as c:
        yield c


@pytest.fixture(scope="module")
def scoped_server(
    scoped_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with serve_process(scoped_model_dir, tmp_path_factory.mktemp("scoped-log")) as server:
        yield server


def noise_png(seed: int = 0, size: int = 64) -> bytes:
    """Random pixels: nothing like a smear."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
