"""Micro-batching: the `Batcher` on its own, then `bloodcell serve` under concurrent clients.

The server tests use a tiny model whose answers differ per image (tests/models), so a reply
that went to the wrong client would show.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from tests.models import tiny_model_dir
from tests.serve.conftest import LiveServer, png_bytes, serve_process

from bloodcell.labels import LABELS
from bloodcell.models.engines import open_model
from bloodcell.predict import predict_images
from bloodcell.serve.batching import Batcher

# --- the Batcher ------------------------------------------------------------------------------


class Recorder:
    """A batch function that squares numbers, keeps the batch sizes and can be held back."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.gate.wait(30)
        self.sizes.append(len(items))
        if any(x < 0 for x in items):
            raise ValueError("negative input")
        return [x * x for x in items]


async def _submit_all(batcher: Batcher, groups: list[list[int]]) -> list[list[int]]:
    calls = [batcher.submit(lambda g=g: list(g)) for g in groups]
    return [results for _, results in await asyncio.gather(*calls)]


def test_each_caller_gets_its_own_results_and_batches_form() -> None:
    square = Recorder()
    batcher = Batcher(square, max_batch_size=8, max_wait_ms=200)
    batcher.start()
    try:
        square.gate.clear()  # the first batch is held, so the others queue up behind it

        async def scenario() -> list[list[int]]:
            task = asyncio.ensure_future(_submit_all(batcher, [[i, i + 100] for i in range(20)]))
            while batcher.stats()["queued"] < 32:  # the held batch has at most 8
                await asyncio.sleep(0.01)
            square.gate.set()
            return await task

        results = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert results == [[i * i, (i + 100) ** 2] for i in range(20)]
    assert sum(square.sizes) == 40 and max(square.sizes) == 8 and len(square.sizes) >= 5
    stats = batcher.stats()
    assert stats["images"] == 40 and stats["largest_batch"] == 8 and stats["queued"] == 0


def test_a_lone_request_does_not_wait_for_the_batch_to_fill() -> None:
    batcher = Batcher(Recorder(), max_batch_size=32, max_wait_ms=10_000)
    batcher.start()
    try:
        start = time.monotonic()
        _, results = asyncio.run(batcher.submit(lambda: [3]))
        elapsed = time.monotonic() - start
    finally:
        batcher.stop()
    assert results == [9]
    assert elapsed < 5  # nothing else was arriving, so the 10 s wait never started


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    square = Recorder()
    batcher = Batcher(square, max_batch_size=1)
    batcher.start()
    try:
        with pytest.raises(ValueError, match="negative input"):
            asyncio.run(batcher.submit(lambda: [-1]))
        assert asyncio.run(batcher.submit(lambda: [4]))[1] == [16]
    finally:
        batcher.stop()


def test_a_failing_prepare_is_not_queued() -> None:
    square = Recorder()
    batcher = Batcher(square)
    batcher.start()

    def broken() -> list[int]:
        raise OSError("cannot decode")

    try:
        with pytest.raises(OSError, match="cannot decode"):
            asyncio.run(batcher.submit(broken))
        assert asyncio.run(batcher.submit(lambda: [2]))[1] == [4]
    finally:
        batcher.stop()
    assert square.sizes == [1]


@pytest.mark.parametrize(("size", "wait"), [(0, 5.0), (4, -1.0)])
def test_bad_settings_are_refused(size: int, wait: float) -> None:
    with pytest.raises(ValueError):
        Batcher(Recorder(), max_batch_size=size, max_wait_ms=wait)


# --- the server under concurrent clients ------------------------------------------------------

CLIENTS = 16


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The default server options, on a model whose probabilities differ per image."""
    with serve_process(tiny_model_dir(), tmp_path_factory.mktemp("tiny-log")) as server:
        yield server


def _images() -> dict[str, bytes]:
    return {
        f"{label}-{i}.png": png_bytes(label, i) for i in range(CLIENTS // 4) for label in LABELS
    }


async def _post_all(url: str, images: dict[str, bytes]) -> dict[str, dict]:
    """One request per image, all at once from separate connections."""
    limits = httpx.Limits(max_connections=len(images))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(name: str, data: bytes) -> dict:
            r = await client.post("/v1/predict", files=[("files", (name, data, "image/png"))])
            assert r.status_code == 200, r.text
            (result,) = r.json()["results"]
            return result

        answers = await asyncio.gather(*(one(n, d) for n, d in images.items()))
    return dict(zip(images, answers, strict=True))


def test_concurrent_clients_each_get_their_own_answer(tiny_server: LiveServer) -> None:
    images = _images()
    backend = open_model(tiny_model_dir())
    decoded = [Image.open(io.BytesIO(d)).convert("RGB") for d in images.values()]
    expected = {p.path: p for p in predict_images(backend, decoded, list(images))}
    # The images must be told apart by their answers, or a swap would go unnoticed.
    rows = {tuple(round(v, 3) for v in p.probabilities.values()) for p in expected.values()}
    assert len(rows) == len(images)

    before = httpx.get(f"{tiny_server.url}/health").json()["queue"]
    answers = {}
    for _ in range(3):  # three rounds of 16 simultaneous clients
        answers = asyncio.run(_post_all(tiny_server.url, images))
        for name, got in answers.items():
            want = expected[name]
            assert got["filename"] == name and got["label"] == want.label
            for label in LABELS:
                assert got["probabilities"][label] == pytest.approx(
                    want.probabilities[label], abs=1e-4
                )
    after = httpx.get(f"{tiny_server.url}/health").json()["queue"]
    assert after["images"] - before["images"] == 3 * len(images)
    assert after["largest_batch"] > 1, after  # requests really shared model calls
    assert after["batches"] - before["batches"] < 3 * len(images)


def test_health_answers_while_the_queue_is_busy(tiny_server: LiveServer) -> None:
    many = [
        ("files", (f"{i}.png", png_bytes("pre_b", i, size=256), "image/png")) for i in range(16)
    ]

    async def scenario() -> tuple[list[int], list[dict]]:
        async with httpx.AsyncClient(base_url=tiny_server.url, timeout=120) as client:
            load = asyncio.gather(*(client.post("/v1/predict", files=many) for _ in range(8)))
            load_task = asyncio.ensure_future(load)
            seen = []
            while not load_task.done():
                r = await client.get("/health", timeout=10)
                assert r.status_code == 200
                seen.append(r.json()["queue"])
                await asyncio.sleep(0.02)
            return [r.status_code for r in await load_task], seen

    statuses, seen = asyncio.run(scenario())
    assert statuses == [200] * 8
    assert any(q["queued"] > 0 for q in seen), "the queue was never seen busy"
