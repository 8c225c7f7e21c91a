"""Micro-batching for the server: images from requests that arrive together share one model call.

One model call on many images can cost less per image than one call per image (how much
depends on the engine and the hardware: on the 2-core CPU of BENCHMARKS.md it barely did), so
concurrent single-image requests are gathered by one worker thread into batches of at most
`max_batch_size`. The worker takes what is queued; when the batch is not full and other
requests are still being decoded (`incoming`), it waits for them, but never longer than
`max_wait` after the oldest queued image arrived. A lone client therefore never waits, and a
busy server fills its batches from images that queued while the previous batch ran.

The model runs on the worker thread only, off the event loop, so `/health` keeps answering
while the queue is busy. Anything else that uses the model (Grad-CAM) takes `model_lock`,
because hooks and threads on one model do not mix.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_WAIT_MS = 5.0


@dataclass
class _Item(Generic[T, R]):
    value: T
    future: Future[R] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class Batcher(Generic[T, R]):
    """A queue of single items in front of `run_batch`, which maps a list of items to a list of
    results in the same order; each caller gets back the results of its own items."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {max_batch_size}")
        if not 0 <= max_wait_ms <= 10_000:
            raise ValueError(f"the batch wait must be 0 to 10000 ms, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.model_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[_Item[T, R]] = []
        self._incoming = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batches = 0
        self._items = 0
        self._largest = 0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._work, name="bloodcell-batcher", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the worker."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._thread = None

    # --- the request side (event loop) ----------------------------------------------------

    async def submit(self, prepare: Callable[[], list[T]]) -> tuple[list[T], list[R]]:
        """Run `prepare` (decoding: blocking) in the threadpool, queue the items it returns and
        wait for their results; return both, in order. While `prepare` runs, the worker knows
        these items are on their way."""
        if self._thread is None:
            raise RuntimeError("the batch worker is not running (start the app's lifespan)")
        with self._cond:
            self._incoming += 1
        try:
            values = await run_in_threadpool(prepare)
        except BaseException:
            with self._cond:
                self._incoming -= 1
                self._cond.notify_all()
            raise
        items = [_Item[T, R](v) for v in values]
        with self._cond:
            self._queue.extend(items)
            self._incoming -= 1
            self._cond.notify_all()
        # A cancelled request (client gone) cancels its futures; the worker skips them.
        results = await asyncio.gather(*(asyncio.wrap_future(i.future) for i in items))
        return values, list(results)

    def stats(self) -> dict[str, Any]:
        """Counters for /health: whether batches form, and how much is waiting."""
        with self._cond:
            return {
                "max_batch_size": self.max_batch_size,
                "max_wait_ms": self.max_wait_ms,
                "queued": len(self._queue),
                "batches": self._batches,
                "images": self._items,
                "largest_batch": self._largest,
            }

    # --- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                with self.model_lock:
                    results = list(self.run_batch([item.value for item in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"{len(live)} items gave {len(results)} results")
            except BaseException as exc:  # every waiting request hears about it
                for item in live:
                    item.future.set_exception(exc)
                continue
            with self._cond:
                self._batches += 1
                self._items += len(live)
                self._largest = max(self._largest, len(live))
            for item, result in zip(live, results, strict=True):
                item.future.set_result(result)

    def _next_batch(self) -> list[_Item[T, R]] | None:
        """Block for the first item, then gather more while they are on their way."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].arrived + self.max_wait_ms / 1000
            while (
                len(self._queue) < self.max_batch_size and self._incoming > 0 and not self._stopping
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = self._queue[: self.max_batch_size]
            del self._queue[: self.max_batch_size]
            return batch
