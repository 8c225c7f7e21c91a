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


@pytest.mark.parametrize("protocols", [False, True])
def test_verbose_reaches_the_folds(protocols: bool, tmp_path: Path, monkeypatch) -> None:
    import bloodcell.workflows.cv_job as cv

    seen: list[bool] = []

    def job(*args, verbose: bool = False, **kw) -> list:
        seen.append(verbose)
        return []

    monkeypatch.setattr(cv, "compare_protocols_fold" if protocols else "run_cv_fold", job)
    args = ["cv", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--fold", "1"]
    args += ["--compare-protocols"] if protocols else []
    assert main(args) == 0 and main([*args, "--verbose"]) == 0
    assert seen == [False, True]
