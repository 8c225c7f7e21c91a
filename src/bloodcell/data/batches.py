"""Batches made ahead by threads: while the caller runs the model on one batch (on every core),
a few threads make the next batch's items (decoding, the white-cell finder, corruptions,
resizing: OpenCV, NumPy and PIL, which let go of the GIL).

Without it, every evaluation loop prepared a batch on one thread while the model waited, then
ran the model while that thread waited. `make` must give the same result for an item whatever
the thread or the order (the corruptions of training and robustness draw from the item's
index), so the batches are exactly those of a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Threads that make the next batch's items.
MAKER_THREADS = 2


def made_ahead(
    make: Callable[[T], R], items: Iterable[T], batch_size: int, threads: int = MAKER_THREADS
) -> Iterator[list[R]]:
    """`make(item)` for every item, in order, in lists of `batch_size`; the next list is being
    made by `threads` threads while the caller works on this one. An error in `make` is
    raised here, at its batch."""
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    it = iter(items)
    with ThreadPoolExecutor(threads, thread_name_prefix="bloodcell-make") as pool:

        def submit() -> list[Future[R]]:
            return [pool.submit(make, item) for item in islice(it, batch_size)]

        ahead = submit()
        while ahead:
            batch = [f.result() for f in ahead]
            ahead = submit()
            yield batch
