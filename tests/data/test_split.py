"""Split invariants: per-class ratios, groups never cross splits, byte-identical output."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from tests.conftest import make_dataset

from bloodcell.data.discover import discover
from bloodcell.data.manifest import read_manifest, write_manifest
from bloodcell.data.split import (
    file_number,
    format_counts,
    integer_targets,
    make_groups,
    make_split,
    split_counts,
)
from bloodcell.data.verify import FileRecord, VerifyReport, verify
from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS


def _report(counts: dict[str, int], exact=(), near=(), unreadable=()) -> VerifyReport:
    """A report over `counts` distinct images per class, with the given duplicate groups."""
    records = [
        FileRecord(f"{lab}/img-{i:04d}.jpg", lab, f"{lab}{i}", f"{i:016x}", 8, 8)
        for lab, n in counts.items()
        for i in range(n)
    ]
    return VerifyReport(
        Path("/data"),
        "folders",
        records,
        list(unreadable),
        [list(g) for g in exact],
        [list(g) for g in near],
        labels_by_path={r.path: r.label for r in records},
    )


def _by_group(rows):
    out = defaultdict(set)
    for r in rows:
        out[r.group].add(r.split)
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.6, 0.4, 0.0)])
def test_ratios_within_one_image_per_class(seed, ratios) -> None:
    counts = {"benign": 23, "early_pre_b": 101, "pre_b": 7, "pro_b": 58}
    rows = make_split(_report(counts), seed=seed, ratios=ratios)
    got = split_counts(rows)
    for lab, n in counts.items():
        for k, split in enumerate(("train", "val", "test")):
            assert abs(got[split][lab] - n * ratios[k]) <= 1, (lab, split)


def test_groups_never_cross_splits_and_stay_close() -> None:
    counts = {lab: 60 for lab in LABELS}
    exact = [[f"pro_b/img-{i:04d}.jpg", f"pro_b/img-{i + 1:04d}.jpg"] for i in range(0, 40, 2)]
    near = [["benign/img-0001.jpg", "benign/img-0002.jpg", "pre_b/img-0003.jpg"]]
    rows = make_split(_report(counts, exact, near), seed=3)
    assert all(len(s) == 1 for s in _by_group(rows).values())
    split_of = {r.path: r.split for r in rows}
    for g in exact + near:
        assert len({split_of[p] for p in g}) == 1
    got = split_counts(rows)
    for lab in LABELS:
        assert abs(got["test"][lab] - 6) <= 1 and abs(got["val"][lab] - 6) <= 1


def test_block_size_keeps_number_runs_together() -> None:
    counts = {lab: 100 for lab in LABELS}
    report = _report(counts)
    rows = make_split(report, seed=0, block_size=10)
    groups = _by_group(rows)
    assert len(groups) == 40 and all(len(s) == 1 for s in groups.values())
    by_block = defaultdict(set)
    for r in rows:
        by_block[(r.label, file_number(r.path) // 10)].add(r.split)
    assert all(len(s) == 1 for s in by_block.values())
    got = split_counts(rows)
    assert all(got["test"][lab] == 10 and got["val"][lab] == 10 for lab in LABELS)
    assert len(make_groups(report, 25)) == 16


def test_deterministic_bytes_and_seed_matters(tmp_path: Path) -> None:
    report = _report({lab: 40 for lab in LABELS})
    a = write_manifest(make_split(report, seed=5), tmp_path / "a.csv").read_bytes()
    b = write_manifest(make_split(report, seed=5), tmp_path / "b.csv").read_bytes()
    c = write_manifest(make_split(report, seed=6), tmp_path / "c.csv").read_bytes()
    assert a == b and a != c


def test_unreadable_left_out_and_manifest_round_trip(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "4class", n_per_class=10)
    cls = root / "Blood cell Cancer [ALL]" / "Benign"
    (cls / "broken.jpg").write_bytes(b"nope")
    shutil.copy(cls / "benign-003.jpg", cls / "benign-003 copy.jpg")
    report = verify(discover(root), progress=False)
    rows = make_split(report, seed=0)
    paths = {r.path for r in rows}
    assert "Blood cell Cancer [ALL]/Benign/broken.jpg" not in paths
    assert len(rows) == 41 and all((root / p).is_file() for p in paths)
    dup = [r for r in rows if "benign-003" in r.path]
    assert len({r.group for r in dup}) == 1 and len({r.split for r in dup}) == 1
    out = write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(out) == rows
    assert "Benign" in format_counts(rows) and "total" in format_counts(rows)


def test_bad_arguments() -> None:
    report = _report({lab: 5 for lab in LABELS})
    with pytest.raises(DatasetError, match="sum to"):
        make_split(report, ratios=(0.5, 0.1, 0.1))
    with pytest.raises(DatasetError, match="three"):
        make_split(report, ratios=(0.9, 0.1))
    with pytest.raises(DatasetError, match="block-size"):
        make_split(report, block_size=0)
    with pytest.raises(DatasetError, match="no readable"):
        make_split(_report({"benign": 3, "early_pre_b": 3, "pre_b": 3, "pro_b": 0}))


def test_integer_targets_and_file_number() -> None:
    for n in range(0, 60):
        t = integer_targets(n, (0.8, 0.1, 0.1))
        assert sum(t) == n and all(
            abs(x - n * r) < 1 for x, r in zip(t, (0.8, 0.1, 0.1), strict=True)
        )
    assert file_number("Original/Pro/WBC-Malignant-Pro-042.jpg") == 42
    assert file_number("a/b.png") is None
