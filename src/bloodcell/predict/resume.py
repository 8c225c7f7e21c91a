"""`--resume`: which paths a killed run already wrote, after cutting off what it left unfinished."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from bloodcell.errors import BloodcellError
from bloodcell.predict.columns import csv_header

#: Formats whose output `--resume` can continue.
RESUMABLE = ("csv", "jsonl", "parquet")


def check_resume(fmt: str, out: Path | None, group: bool) -> None:
    """Refuse, before any work, a resume that could not continue its output."""
    if out is None or fmt not in RESUMABLE:
        raise BloodcellError("--resume needs --out with a .csv, .jsonl or .parquet output")
    if group:
        raise BloodcellError("--group-by-folder is computed in one go and cannot --resume")


def done_paths(fmt: str, out: Path, labels: Sequence[str]) -> set[str]:
    """Paths already in a CSV or JSON Lines output (none when it does not exist yet)."""
    if not out.is_file():
        return set()
    if fmt == "jsonl":
        return jsonl_done_paths(out, labels)
    return csv_done_paths(out, labels)


def csv_done_paths(path: Path, labels: Sequence[str]) -> set[str]:
    """Paths already in a CSV output, after cutting off a partial last line left by a kill.

    Reads the file row by row; only the set of paths is kept.
    """
    _cut_partial_line(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return set()
        if header != csv_header(labels):
            raise _not_ours(path, "columns")
        return {row[0] for row in reader if row}


def jsonl_done_paths(path: Path, labels: Sequence[str]) -> set[str]:
    """Paths already in a JSON Lines output, after cutting off a partial last line.

    Every line must be a prediction of a model with these labels (error rows have no
    probabilities to check).
    """
    _cut_partial_line(path)
    done: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                done.add(_jsonl_path(line, path, labels))
    return done


def _jsonl_path(line: str, path: Path, labels: Sequence[str]) -> str:
    try:
        row = json.loads(line)
    except ValueError:
        raise _not_ours(path, "lines") from None
    if not isinstance(row, dict) or not isinstance(row.get("path"), str):
        raise _not_ours(path, "lines")
    probs = row.get("probabilities")
    if probs is not None and set(probs) != set(labels):
        raise _not_ours(path, "lines")
    return row["path"]


def _not_ours(path: Path, what: str) -> BloodcellError:
    return BloodcellError(
        f"cannot resume {path}: its {what} are not this model's predictions; choose another --out"
    )


def _cut_partial_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate `path` after its last newline (rows are written whole, newline last)."""
    with path.open("rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                pos = start + nl + 1
                break
            pos = start
        if pos < end:
            fh.truncate(pos)


def parquet_done_paths(folder: Path) -> tuple[set[str], int]:
    """Paths in a Parquet dataset's complete parts, and the number of the next part.

    The unfinished `.tmp` part of a killed run is deleted: its rows are predicted again.
    """
    import pyarrow.parquet as pq

    done: set[str] = set()
    next_part = 0
    if not folder.is_dir():
        return done, next_part
    for tmp in folder.glob("part-*.parquet.tmp"):
        tmp.unlink()
    for part in sorted(folder.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
        next_part = max(next_part, int(part.name[len("part-") : -len(".parquet")]) + 1)
    return done, next_part
