"""`bloodcell cv --fold`: a fold the folds do not have fails before the data is read, with one
line saying how folds are counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloodcell.cli import main


@pytest.mark.parametrize(
    ("fold", "problem"),
    [
        ("0", "fold 0 does not exist: folds are counted from 1 (as in OUT/seed-S/fold-F)"),
        ("4", "fold 4 does not exist: folds are counted from 1 (as in OUT/seed-S/fold-F), "
              "so with 3 folds it must be 1 to 3"),
        ("-1", "fold -1 does not exist"),
        ("two", "argument --fold: invalid int value: 'two'"),
    ],
)  # fmt: skip
def test_bad_fold_is_one_line_before_any_work(fold: str, problem: str, tmp_path, capsys) -> None:
    out = tmp_path / "cv"
    args = ["cv", "--data", str(tmp_path / "no-data"), "--out", str(out), "--folds", "3"]
    assert main([*args, "--fold", fold]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bloodcell: error:") and problem in err
    assert len(err.splitlines()) == 1
    assert not out.exists()  # nothing written, not even the settings


def test_fold_with_protocols_still_refuses_a_group(tmp_path: Path, capsys) -> None:
    args = ["cv", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--compare-protocols"]
    assert main([*args, "--group", "near", "--fold", "1"]) == 2
    assert "leave --group out" in capsys.readouterr().err
