"""`--resume`: which paths a killed run already wrote, after cutting off what it left unfinished.

What a resumed run promises, against one run of the same command that was never killed (same
model and engine, same inputs; CSV, JSON Lines or Parquet output):

- the complete rows the killed run wrote are kept byte for byte; a partial last line (CSV, JSON
  Lines) or the unfinished `.tmp` part (Parquet) is dropped and those files predicted again;
- every file is in the output exactly once, in the same order (Parquet: reading the parts in
  name order), and a resume of a finished output appends nothing;
- every field but the scores is the same: path, label, display name, uncertain, out_of_scope,
  prediction set, note, engine, error (and any other non-score field of `records.Prediction`);
- the scores (the probabilities, the confidence and the ood_score) are equal within 1e-4,
  absolute or relative to the score where that is larger, not bit for bit: the resumed run
  batches the remaining images differently, and the model's float sums depend on the batch
  (and on the CPU), so a 6-decimal score can move in its last digits (0.021393 against
  0.021391 on an AMD EPYC).

The answers are decided from those scores, so an image whose score lies within that float noise
of a threshold (the uncertain threshold, the out-of-scope threshold, the conformal cut-off, or a
tie between two classes) could in principle be decided the other way; that is the only way a
label, flag or set can differ. `tests/predict/test_resume.py` tests exactly this promise.
"""

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
