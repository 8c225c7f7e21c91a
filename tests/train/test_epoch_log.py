"""log.csv: its columns, and a repeated epoch (after a resume) replacing the later rows."""

from __future__ import annotations

from pathlib import Path

from bloodcell.train.epoch_log import LOG_COLUMNS, append_log_row, read_log


def test_a_repeated_epoch_replaces_itself_and_later_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    row = dict.fromkeys(LOG_COLUMNS, 0.5)
    for epoch in (0, 1, 2, 1):
        append_log_row(path, row | {"epoch": epoch})
    assert path.read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
    assert [int(r["epoch"]) for r in read_log(path)] == [0, 1]
    assert read_log(tmp_path / "missing.csv") == []
