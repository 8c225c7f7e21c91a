"""Batches made ahead by threads: the items of a plain loop, in order, in batches; an error
reaches the caller at its batch."""

from __future__ import annotations

import threading
import time

import pytest

from bloodcell.data.batches import made_ahead


def test_items_come_in_order_in_batches_whatever_thread_makes_them() -> None:
    names: set[str] = set()

    def make(i: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.002 * (i % 3))  # later items can finish first
        return i * i

    batches = list(made_ahead(make, range(10), batch_size=4))
    assert batches == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    assert all(n.startswith("bloodcell-make") for n in names)
    assert list(made_ahead(make, [], batch_size=4)) == []


def test_the_next_batch_is_made_while_the_caller_works() -> None:
    made: list[int] = []
    batches = made_ahead(lambda i: made.append(i) or i, range(6), batch_size=2)
    assert next(batches) == [0, 1]
    deadline = time.monotonic() + 10  # the caller works on its batch; the threads make the next
    while len(made) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(made) == [0, 1, 2, 3]  # the next batch, and no further
    assert list(batches) == [[2, 3], [4, 5]]


def test_an_error_reaches_the_caller_at_its_batch() -> None:
    def make(i: int) -> int:
        if i == 3:
            raise ValueError("item 3 is broken")
        return i

    batches = made_ahead(make, range(6), batch_size=2)
    assert next(batches) == [0, 1]
    with pytest.raises(ValueError, match="item 3"):
        next(batches)
    with pytest.raises(ValueError, match="at least 1"):
        next(made_ahead(make, range(2), batch_size=0))
