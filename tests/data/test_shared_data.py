"""Integration on the real Kaggle data in ../shared (skipped when absent; read-only)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from bloodcell.data.discover import discover
from bloodcell.data.split import make_split, split_counts
from bloodcell.data.verify import verify

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

EXPECTED = {"benign": 422, "early_pre_b": 855, "pre_b": 835, "pro_b": 692}


_REPORTS: dict[Path, object] = {}


@pytest.fixture
def report(shared_data: Path):
    """verify() once per session for the real data (about 3 s)."""
    if shared_data not in _REPORTS:
        _REPORTS[shared_data] = verify(discover(shared_data), progress=False)
    return _REPORTS[shared_data]


def test_counts_and_known_duplicates(report) -> None:
    assert report.layout == "mehradaria" and report.segmented_root is not None
    assert report.counts == EXPECTED and report.unreadable == [] and report.usable
    exact = report.exact_duplicate_groups
    assert len(exact) == 40 and all(len(g) == 2 for g in exact)
    assert all(p.startswith("Original/Pro/") for g in exact for p in g)
    assert len(report.near_duplicate_groups) >= 50


@pytest.mark.parametrize("block_size", [None, 10])
def test_split_keeps_duplicates_together(report, block_size) -> None:
    rows = make_split(report, seed=0, block_size=block_size)
    assert len(rows) == sum(EXPECTED.values())
    splits = defaultdict(set)
    for r in rows:
        splits[r.group].add(r.split)
    assert all(len(s) == 1 for s in splits.values())
    split_of = {r.path: r.split for r in rows}
    for g in report.exact_duplicate_groups + report.near_duplicate_groups:
        assert len({split_of[p] for p in g}) == 1
    got = split_counts(rows)
    slack = 1 if block_size is None else block_size
    for lab, n in EXPECTED.items():
        assert abs(got["test"][lab] - n * 0.1) <= slack
