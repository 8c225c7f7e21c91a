"""A bounded load test on loopback: 300 single-image predictions from 16 concurrent clients
against `bloodcell serve`. Every request must succeed and the server's memory must stay flat
(resident set after warm-up vs at the end, within RSS_TOLERANCE).

The server batches requests that arrive together, and its memory grows with each new batch
size it meets, then levels off (measured: +50 MB over the first ~1,500 requests, then flat;
most likely the CPU kernels torch caches per input shape). The warm-up therefore sends
rounds of 1 to CONCURRENCY simultaneous requests, so that the measured run meets no batch
size it has not met before."""

from __future__ import annotations

import asyncio
import time

import httpx
from tests.serve.conftest import LiveServer, png_bytes

REQUESTS = 300
CONCURRENCY = 16
WARMUP = 64
#: Allocator arenas and the threadpool settle during warm-up; a leak of even 100 kB per
#: request would add 30 MB over the run.
RSS_TOLERANCE = 25 * 1024 * 1024


async def _hammer(url: str, n: int, concurrency: int) -> list[int]:
    """Send n predictions, at most `concurrency` in flight; return the status codes."""
    images = [png_bytes(label, i) for i, label in enumerate(["benign", "pre_b", "pro_b"])]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                files = [("files", (f"{i}.png", images[i % len(images)], "image/png"))]
                r = await client.post("/v1/predict", files=files)
                statuses.append(r.status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def test_concurrent_load_all_succeed_and_memory_is_flat(live_server: LiveServer) -> None:
    for clients in range(1, CONCURRENCY + 1):
        assert set(asyncio.run(_hammer(live_server.url, clients, clients))) == {200}
    assert set(asyncio.run(_hammer(live_server.url, WARMUP, CONCURRENCY))) == {200}
    rss_before = live_server.rss_bytes()
    start = time.perf_counter()
    statuses = asyncio.run(_hammer(live_server.url, REQUESTS, CONCURRENCY))
    elapsed = time.perf_counter() - start
    rss_after = live_server.rss_bytes()
    print(
        f"\n{REQUESTS} requests, {CONCURRENCY} clients: {REQUESTS / elapsed:.1f} req/s; "
        f"server RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    assert len(statuses) == REQUESTS and set(statuses) == {200}
    assert rss_after - rss_before < RSS_TOLERANCE
    assert httpx.get(f"{live_server.url}/health", timeout=5).status_code == 200
