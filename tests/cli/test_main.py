"""The command line's one logging setup: the library's progress lines as plain lines on
whatever stderr is, once however often `main` runs in a process."""

from __future__ import annotations

import logging

import pytest

from bloodcell.cli import log_to_stderr, main


def test_progress_lines_reach_stderr_plainly_and_once(capsys: pytest.CaptureFixture) -> None:
    log_to_stderr()
    log_to_stderr()
    logging.getLogger("bloodcell.workflows.cv_job").info("cv: seed %d, fold %d/%d", 0, 1, 2)
    logging.getLogger("bloodcell.models.engines").debug("not shown at INFO")
    captured = capsys.readouterr()
    assert captured.err == "cv: seed 0, fold 1/2\n" and captured.out == ""


def test_main_sets_it_up_for_every_command(tmp_path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "split", "--data", str(tmp_path / "none"), "--out", "m.csv"]) == 2
    logging.getLogger("bloodcell.export.check").info("int8: failed its check")
    err = capsys.readouterr().err
    assert err.startswith("bloodcell: error:") and err.endswith("int8: failed its check\n")
    handlers = logging.getLogger("bloodcell").handlers
    assert len(handlers) == 1 and logging.getLogger("bloodcell").level == logging.INFO
