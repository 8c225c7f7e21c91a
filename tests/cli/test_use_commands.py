"""`bloodcell predict --shard`: a bad value fails at parsing with one line naming the problem;
a shard writes its part, and an empty one (more shards than files) is not a failure."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.conftest import make_dataset
from tests.models import tiny_model_dir

from bloodcell.cli import main


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0/3", "shard 0/3: the shard number I must be between 1 and N=3"),
        ("4/3", "shard 4/3: the shard number I must be between 1 and N=3"),
        ("1/0", "the number of shards N must be at least 1"),
        ("3", "write it as I/N"),
        ("x/3", "write it as I/N"),
    ],
)
def test_bad_shard_is_one_line(value: str, problem: str, tmp_path: Path, capsys) -> None:
    # the model is not even opened: a missing one would be a different error
    assert main(["predict", str(tmp_path / "no-model"), str(tmp_path), "--shard", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bloodcell: error: predict: argument --shard:") and problem in err
    assert len(err.splitlines()) == 1


def test_shard_with_folder_totals_is_refused(tmp_path: Path, capsys) -> None:
    args = ["predict", str(tiny_model_dir()), str(tmp_path), "--shard", "1/2", "--group-by-folder"]
    assert main(args) == 2
    assert "span two shards" in capsys.readouterr().err


def test_shards_write_their_parts_and_an_empty_one_succeeds(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "imgs", "generic", n_per_class=1, size=32)  # 4 files
    outs = [tmp_path / f"out-{i}.csv" for i in (1, 2, 3, 4, 5)]
    for i, out in enumerate(outs, start=1):
        args = ["predict", str(tiny_model_dir()), str(root), "--out", str(out)]
        assert main([*args, "--shard", f"{i}/5"]) == 0
    rows = [list(csv.DictReader(out.open())) for out in outs]
    assert [len(r) for r in rows] == [0, 1, 1, 1, 1]  # shard 1 of 5 over 4 files is empty
    names = [Path(r["path"]).name for part in rows for r in part]
    assert names == sorted(names) and len(names) == 4
