"""Fold invariants: every image tested once, no group in two folds, classes shared out within
one image, validation taken grouped from the training folds, byte-identical manifests."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from tests.data.test_split import _report

from bloodcell.data.folds import cv_groups, make_folds
from bloodcell.data.manifest import select, write_manifest
from bloodcell.data.split import file_number
from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS

COUNTS = {"benign": 23, "early_pre_b": 101, "pre_b": 17, "pro_b": 58}
EXACT = [[f"pro_b/img-{i:04d}.jpg", f"pro_b/img-{i + 1:04d}.jpg"] for i in range(0, 20, 2)]
NEAR = [["benign/img-0001.jpg", "benign/img-0002.jpg", "pre_b/img-0003.jpg"]]


def _fold_of(folds) -> dict[str, list[int]]:
    """path -> the folds whose test split holds it."""
    out = defaultdict(list)
    for i, rows in enumerate(folds):
        for r in select(rows, "test"):
            out[r.path].append(i)
    return out


@pytest.mark.parametrize("grouping", ["image", "exact", "near", "block"])
@pytest.mark.parametrize("k", [3, 5])
def test_every_image_tested_once_and_no_group_in_two_folds(grouping, k) -> None:
    report = _report(COUNTS, EXACT, NEAR)
    folds = make_folds(report, k, seed=1, grouping=grouping)
    assert len(folds) == k
    everything = {r.path for r in report.records}
    for rows in folds:  # each manifest covers every image once
        assert sorted(r.path for r in rows) == sorted(everything)
    tested = _fold_of(folds)
    assert set(tested) == everything and all(len(f) == 1 for f in tested.values())
    # the grouping's own groups never span two folds, nor train and val inside one
    for g in cv_groups(report, grouping):
        assert len({tested[r.path][0] for r in g}) == 1
    for rows in folds:
        splits = defaultdict(set)
        for r in rows:
            splits[r.group].add(r.split)
        assert all(len(s) == 1 for s in splits.values())
    if grouping != "image":
        for g in EXACT + (NEAR if grouping != "exact" else []):
            assert len({tested[p][0] for p in g}) == 1, g
    if grouping == "block":
        by_block = defaultdict(set)
        for path, (f,) in tested.items():
            by_block[(path.split("/")[0], file_number(path) // 10)].add(f)
        assert all(len(s) == 1 for s in by_block.values())


@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_within_one_image_per_class(seed) -> None:
    k = 5
    folds = make_folds(_report(COUNTS, EXACT, NEAR), k, seed=seed, val_fraction=0.1)
    for rows in folds:
        test = Counter(r.label for r in select(rows, "test"))
        val = Counter(r.label for r in select(rows, "val"))
        for lab, n in COUNTS.items():
            assert abs(test[lab] - n / k) <= 1, (lab, test[lab])
            assert abs(val[lab] - 0.1 * (n - test[lab])) <= 1, (lab, val[lab])


def test_exact_grouping_does_not_join_near_copies() -> None:
    report = _report(COUNTS, EXACT, NEAR)
    exact = {r.path: r.group for r in make_folds(report, 3, grouping="exact")[0]}
    near = {r.path: r.group for r in make_folds(report, 3, grouping="near")[0]}
    assert len({exact[p] for p in NEAR[0]}) == 3 and len({near[p] for p in NEAR[0]}) == 1
    assert all(len({exact[p] for p in g}) == 1 for g in EXACT)


def test_manifests_are_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    report = _report(COUNTS, EXACT, NEAR)

    def written(seed: int, name: str) -> list[bytes]:
        folds = make_folds(report, 4, seed=seed, grouping="block", block_size=5)
        return [
            write_manifest(f, tmp_path / f"{name}{i}.csv").read_bytes() for i, f in enumerate(folds)
        ]

    a, b, c = written(7, "a"), written(7, "b"), written(8, "c")
    assert a == b and a != c
    assert len(set(a)) == 4  # the folds differ from each other


def test_bad_settings_are_named() -> None:
    report = _report({lab: 6 for lab in LABELS})
    with pytest.raises(DatasetError, match="at least 2"):
        make_folds(report, 1)
    with pytest.raises(DatasetError, match="fewer images than --folds 7"):
        make_folds(report, 7)
    with pytest.raises(DatasetError, match="needs --group block or run"):
        make_folds(report, 3, grouping="near", block_size=4)
    with pytest.raises(DatasetError, match="--group 'slide'"):
        make_folds(report, 3, grouping="slide")
    with pytest.raises(DatasetError, match="--val-fraction"):
        make_folds(report, 3, val_fraction=1.0)
    with pytest.raises(DatasetError, match="fold 1: --val-fraction 0.01 .* no validation"):
        make_folds(report, 3, val_fraction=0.01)
    with pytest.raises(DatasetError, match="no readable"):
        make_folds(_report({"benign": 3, "early_pre_b": 3, "pre_b": 3, "pro_b": 0}), 2)
