"""Predict the class of new smear images, streaming over batches, with honest confidence.

Library use (a server, a large-archive job)::

    backend = open_backend("runs/x")                  # run/model dir or .onnx
    for batch in predict_paths(backend, ["slides/"]):  # lazily walks, yields per batch
        for p in batch: print(p.to_dict())
    predict_images(backend, [pil_image])               # already-decoded images

Files: every PATH that is a file is tried; folders are searched recursively (sorted, hidden
files and folders skipped) and every file in them is tried. A file that cannot be decoded as
an image becomes an *error row* (path + reason) and the rest goes on.

`confidence` is the calibrated (temperature-scaled) top-class probability; `uncertain` is true
when it is below the threshold (model config `uncertain_threshold`, default 0.8, see
`bloodcell.calibrate`). With TTA the probabilities are the mean over the 8 dihedral views
(4 rotations x optional flip): smears have no orientation.

`out_of_scope` is true when the image is unlike the training smears (`models.ood`: its
`ood_score` is over the model's threshold); such a row has no class (label, display name,
confidence, uncertain and set are empty; the probabilities are listed for the record).
`prediction_set` is the conformal set of the classes the image still fits (`models.conformal`,
at the model's coverage, 95% by default); `note` says it in plain words when it holds more than
one class ("Benign or Malignant Early Pre-B: ... confirm by flow cytometry"). A model saved
without a detector or sets leaves these fields empty (null).

JSON schema (`--format json`), one document, written as it goes::

    {"model": {"path", "backend", "architecture", "labels", "temperature",
               "uncertain_threshold", "image_size", ...},
     "tta": bool, "uncertain_threshold": float,
     "predictions": [
        {"path": str, "label": str|null, "display_name": str|null,
         "confidence": float|null, "uncertain": bool|null,
         "probabilities": {label: float, ...}|null, "out_of_scope": bool|null,
         "ood_score": float|null, "prediction_set": [label, ...]|null, "note": str|null,
         "error": str|null}, ...],
     "groups": [GROUP, ...],          # only with --group-by-folder
     "summary": {"n_files", "n_predicted", "n_errors", "n_uncertain", "n_out_of_scope",
                 "counts": {label: int}}}

    GROUP = {"folder": str, "n_images": int, "n_errors": int, "n_uncertain": int,
             "n_out_of_scope": int, "counts": {label: int},
             "mean_probabilities": {label: float}|null}

CSV schema (`--format csv`), one row per file, header first::

    path,label,display_name,confidence,uncertain,out_of_scope,ood_score,prediction_set,
    prob_benign,prob_early_pre_b,prob_pre_b,prob_pro_b,error

`uncertain` and `out_of_scope` are `true`/`false`; `prediction_set` is labels joined by `|`;
on error rows every column but `path` and `error` is empty. With `--group-by-folder`, the
groups go to `<out stem>.groups.csv` (or, on stdout, after one blank line) with columns
`folder,n_images,n_errors,n_uncertain,n_out_of_scope,count_<label>...,mean_prob_<label>...`.

Parquet (`--out results.parquet`, or `--format parquet`): a Parquet *dataset*, i.e. a folder
`results.parquet/` of `part-00000.parquet`, `part-00001.parquet`, ... with the CSV's columns
(`confidence`, `ood_score` and `prob_*` float64, `uncertain` and `out_of_scope` bool, nulls
where CSV has empty cells) and the
JSON `model` metadata under the schema metadata key `bloodcell`. Each part (default 4096 rows,
in row groups of 256) is written under a `.tmp` name and renamed when complete, so a killed run
leaves only complete parts plus one `.tmp` file; read the folder with
`pyarrow.parquet.read_table("results.parquet")` or `pandas.read_parquet(...)`.

Large archives and `--resume`: folders are walked lazily, images are decoded by `--workers`
threads a few batches ahead of the model, and CSV rows are flushed after every batch, so memory
does not grow with the number of files. After an interruption, the same command with `--resume`
reads the paths already in the output (CSV: the partial last line a kill may leave is cut off;
Parquet: the unfinished `.tmp` part is deleted) and predicts only the rest, appending to the
output; every file then appears exactly once. Only CSV and Parquet outputs resume; JSON and
`--group-by-folder` summaries are built in one go and do not.

Exit status of `bloodcell predict`: 0 when at least one image was predicted (error rows do not
fail the run; they are in the output) or, with `--resume`, all were already in the output; 1 when
none could be.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections import deque
from collections.abc import Container, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend, Scored, open_backend
from bloodcell.models.conformal import describe_set, set_labels

FORMATS = ("table", "csv", "json", "parquet")
#: Formats whose output `--resume` can continue.
RESUMABLE = ("csv", "parquet")
#: Batches decoded ahead of the one the model is working on.
PREFETCH = 2
#: What an out-of-scope row says instead of a class.
OUT_OF_SCOPE_NOTE = (
    "outside what this model was trained on (not a B-ALL smear image like its training data): "
    "no class is given"
)


@dataclass(frozen=True)
class Prediction:
    """The answer for one file: a class with probabilities, or an error reason."""

    path: str
    label: str | None = None
    display_name: str | None = None
    confidence: float | None = None
    uncertain: bool | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    out_of_scope: bool | None = None
    ood_score: float | None = None
    prediction_set: list[str] | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in the module docstring."""
        return {
            "path": self.path,
            "label": self.label,
            "display_name": self.display_name,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "probabilities": self.probabilities,
            "out_of_scope": self.out_of_scope,
            "ood_score": self.ood_score,
            "prediction_set": self.prediction_set,
            "note": self.note,
            "error": self.error,
        }


# --- files -----------------------------------------------------------------------------------


def iter_image_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to try, lazily: given files as they are, folders walked recursively and sorted.

    A path that does not exist is yielded too, so that it becomes an error row.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from _walk(p)
        else:
            yield p


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def read_image(path: str | Path) -> Image.Image:
    """Decode a file with the shared decoder; the error says only the problem, because every
    caller shows the path next to it (an error row, `explain`'s list)."""
    try:
        return decode_image(path)
    except ImageDecodeError as exc:
        raise BloodcellError(exc.reason) from None


# --- inference -------------------------------------------------------------------------------


def to_predictions(
    names: Sequence[str], scored: Scored, backend: Backend, threshold: float
) -> list[Prediction]:
    """Turn a scored batch into Prediction records.

    An out-of-scope image gets no class (label, confidence and set are empty; the probabilities
    stay for the record). Otherwise the answer is the top class, flagged `uncertain` below the
    threshold, with the conformal set of the classes that remain possible.
    """
    flags = backend.out_of_scope(scored.ood_score)
    sets = None
    if backend.conformal is not None:
        sets = set_labels(backend.conformal.sets(scored.probs), backend.labels)
    out = []
    for j, (name, row) in enumerate(zip(names, scored.probs, strict=True)):
        common = {
            "path": name,
            "probabilities": dict(zip(backend.labels, _rounded(row), strict=True)),
            "out_of_scope": None if flags is None else bool(flags[j]),
            "ood_score": None if scored.ood_score is None else round(float(scored.ood_score[j]), 6),
        }
        if flags is not None and flags[j]:
            out.append(Prediction(**common, note=OUT_OF_SCOPE_NOTE))
            continue
        i = int(np.argmax(row))
        label = backend.labels[i]
        members = sets[j] if sets is not None else None
        out.append(
            Prediction(
                **common,
                label=label,
                display_name=backend.display_names.get(label, label),
                confidence=round(float(row[i]), 6),
                uncertain=float(row[i]) < threshold,
                prediction_set=members,
                note=describe_set(members or [], backend.display_names),
            )
        )
    return out


def _rounded(row: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in row]


def predict_images(
    backend: Backend,
    images: Sequence[Image.Image],
    names: Sequence[str] | None = None,
    tta: bool = False,
    uncertain_threshold: float | None = None,
) -> list[Prediction]:
    """Predict already-decoded PIL images (e.g. uploads) in one batch."""
    if not images:
        return []
    names = names or [f"image-{i}" for i in range(len(images))]
    transform = backend.preprocess.transform()
    batch = torch.stack([transform(img.convert("RGB")) for img in images])
    threshold = _threshold(backend, uncertain_threshold)
    return to_predictions(names, backend.score(batch, tta), backend, threshold)


def predict_paths(
    backend: Backend,
    paths: Iterable[str | Path],
    batch_size: int = 32,
    tta: bool = False,
    uncertain_threshold: float | None = None,
    workers: int = 2,
    progress: bool | None = False,
    skip: Container[str] = (),
) -> Iterator[list[Prediction]]:
    """Stream predictions for files and folders: yields one list per batch, in file order.

    Files are found lazily and decoded by `workers` threads up to `PREFETCH` batches ahead of
    the model, so decoding overlaps inference and memory stays flat however many files there
    are. Files whose path (as `str`) is in `skip` are left out (`--resume`). Error rows come in
    the batch their file was in.
    """
    paths = list(paths)  # the arguments, not the files: small, and walked twice for the bar
    threshold = _threshold(backend, uncertain_threshold)
    transform = backend.preprocess.transform()

    def load(path: Path) -> torch.Tensor | str:
        try:
            return transform(read_image(path))
        except BloodcellError as exc:
            return str(exc)

    todo = (p for p in iter_image_paths(paths) if str(p) not in skip)
    bar = _progress_bar(paths, progress, skip)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque[tuple[list[Path], list[Future]]] = deque()
        for chunk in _chunks(todo, batch_size):
            pending.append((chunk, [pool.submit(load, p) for p in chunk]))
            if len(pending) > PREFETCH:
                yield _finish_chunk(backend, *pending.popleft(), tta, threshold, bar)
        while pending:
            yield _finish_chunk(backend, *pending.popleft(), tta, threshold, bar)
    if bar is not None:
        bar.close()


def _finish_chunk(
    backend: Backend,
    chunk: list[Path],
    futures: list[Future],
    tta: bool,
    threshold: float,
    bar: Any,
) -> list[Prediction]:
    preds = _predict_chunk(backend, chunk, [f.result() for f in futures], tta, threshold)
    if bar is not None:
        bar.update(len(chunk))
    return preds


def _predict_chunk(
    backend: Backend,
    chunk: list[Path],
    loaded: list[torch.Tensor | str],
    tta: bool,
    threshold: float,
) -> list[Prediction]:
    good = [i for i, x in enumerate(loaded) if isinstance(x, torch.Tensor)]
    results: dict[int, Prediction] = {
        i: Prediction(path=str(chunk[i]), error=str(x))
        for i, x in enumerate(loaded)
        if not isinstance(x, torch.Tensor)
    }
    if good:
        batch = torch.stack([loaded[i] for i in good])
        preds = to_predictions(
            [str(chunk[i]) for i in good], backend.score(batch, tta), backend, threshold
        )
        results.update(zip(good, preds, strict=True))
    return [results[i] for i in range(len(chunk))]


def _threshold(backend: Backend, override: float | None) -> float:
    threshold = backend.uncertain_threshold if override is None else float(override)
    if not 0.0 <= threshold <= 1.0:
        raise BloodcellError(f"uncertain threshold must be in [0, 1], got {threshold}")
    return threshold


def _chunks(items: Iterator[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress_bar(
    paths: Iterable[str | Path], progress: bool | None, skip: Container[str] = ()
) -> Any:
    """A tqdm bar on stderr; `None` shows it only on a terminal. Counting the files first is a
    cheap directory walk that gives the bar a total."""
    if progress is False:
        return None
    from tqdm import tqdm

    total = sum(1 for p in iter_image_paths(paths) if str(p) not in skip)
    hide = progress is None and not sys.stderr.isatty()
    return tqdm(total=total, unit="img", desc="predict", file=sys.stderr, disable=hide)


# --- grouping --------------------------------------------------------------------------------


@dataclass
class FolderSummary:
    """Running per-folder totals (per patient or slide): counts and mean probabilities."""

    folder: str
    labels: Sequence[str]
    n_images: int = 0
    n_errors: int = 0
    n_uncertain: int = 0
    n_out_of_scope: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    prob_sum: np.ndarray | None = None

    def add(self, p: Prediction) -> None:
        if not p.ok:
            self.n_errors += 1
            return
        self.n_images += 1
        self.n_uncertain += int(bool(p.uncertain))
        self.n_out_of_scope += int(bool(p.out_of_scope))
        if p.label is not None:
            self.counts[p.label] = self.counts.get(p.label, 0) + 1
        row = np.array([p.probabilities[lb] for lb in self.labels], dtype=np.float64)
        self.prob_sum = row if self.prob_sum is None else self.prob_sum + row

    def to_dict(self) -> dict[str, Any]:
        mean = None
        if self.prob_sum is not None:
            means = self.prob_sum / self.n_images
            mean = {lb: round(float(v), 6) for lb, v in zip(self.labels, means, strict=True)}
        return {
            "folder": self.folder,
            "n_images": self.n_images,
            "n_errors": self.n_errors,
            "n_uncertain": self.n_uncertain,
            "n_out_of_scope": self.n_out_of_scope,
            "counts": {lb: self.counts.get(lb, 0) for lb in self.labels},
            "mean_probabilities": mean,
        }


class FolderGrouper:
    """Accumulates FolderSummary per parent folder as batches stream by."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.groups: dict[str, FolderSummary] = {}

    def add(self, preds: Iterable[Prediction]) -> None:
        for p in preds:
            folder = str(Path(p.path).parent)
            self.groups.setdefault(folder, FolderSummary(folder, self.labels)).add(p)

    def summaries(self) -> list[dict[str, Any]]:
        return [self.groups[k].to_dict() for k in sorted(self.groups)]


def group_by_folder(preds: Iterable[Prediction], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Per-folder summaries (see GROUP in the module docstring)."""
    grouper = FolderGrouper(labels)
    grouper.add(preds)
    return grouper.summaries()


# --- writers ---------------------------------------------------------------------------------


class Totals:
    """Counts for the summary line and the JSON `summary`."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.n_files = self.n_errors = self.n_uncertain = self.n_out_of_scope = 0
        self.n_skipped = 0  # already in the output (--resume); not part of the JSON summary
        self.counts = dict.fromkeys(self.labels, 0)

    def add(self, preds: Iterable[Prediction]) -> None:
        for p in preds:
            self.n_files += 1
            if not p.ok:
                self.n_errors += 1
                continue
            self.n_uncertain += int(bool(p.uncertain))
            self.n_out_of_scope += int(bool(p.out_of_scope))
            if p.label is not None:
                self.counts[p.label] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_files": self.n_files,
            "n_predicted": self.n_files - self.n_errors,
            "n_errors": self.n_errors,
            "n_uncertain": self.n_uncertain,
            "n_out_of_scope": self.n_out_of_scope,
            "counts": dict(self.counts),
        }


ANSWER_COLUMNS = ["label", "display_name", "confidence", "uncertain"]
SCOPE_COLUMNS = ["out_of_scope", "ood_score", "prediction_set"]


def csv_header(labels: Sequence[str]) -> list[str]:
    probs = [f"prob_{lb}" for lb in labels]
    return ["path", *ANSWER_COLUMNS, *SCOPE_COLUMNS, *probs, "error"]


def csv_row(p: Prediction, labels: Sequence[str]) -> list[str]:
    """One CSV row; `prediction_set` is its labels joined by '|'."""
    if not p.ok:
        return (
            [p.path]
            + [""] * (len(ANSWER_COLUMNS) + len(SCOPE_COLUMNS) + len(labels))
            + [p.error or ""]
        )
    answer = [p.label or "", p.display_name or "", _num(p.confidence), _bool(p.uncertain)]
    scope = [_bool(p.out_of_scope), _num(p.ood_score), "|".join(p.prediction_set or [])]
    probs = [_num((p.probabilities or {}).get(lb)) for lb in labels]
    return [p.path, *answer, *scope, *probs, ""]


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def group_csv_header(labels: Sequence[str]) -> list[str]:
    return (
        ["folder", "n_images", "n_errors", "n_uncertain", "n_out_of_scope"]
        + [f"count_{lb}" for lb in labels]
        + [f"mean_prob_{lb}" for lb in labels]
    )


def group_csv_row(g: dict[str, Any], labels: Sequence[str]) -> list[Any]:
    mean = g["mean_probabilities"]
    return (
        [g["folder"], g["n_images"], g["n_errors"], g["n_uncertain"], g["n_out_of_scope"]]
        + [g["counts"][lb] for lb in labels]
        + [f"{mean[lb]:.6f}" if mean else "" for lb in labels]
    )


def _bool(v: bool | None) -> str:
    return "" if v is None else str(bool(v)).lower()


class Writer:
    """Writes predictions batch by batch; `finish` adds groups and closing text."""

    def __init__(self, fh: IO[str] | None, backend: Backend, meta: dict[str, Any]) -> None:
        self.fh = fh
        self.labels = list(backend.labels)
        self.backend = backend
        self.meta = meta

    def write(self, preds: list[Prediction]) -> None:
        raise NotImplementedError

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        pass


class TableWriter(Writer):
    def __init__(self, fh: IO[str], backend: Backend, meta: dict[str, Any]) -> None:
        super().__init__(fh, backend, meta)
        self.fh.write(f"{'PREDICTION':<22} {'CONF':>6}  {'FLAG':<9} PATH\n")

    def write(self, preds: list[Prediction]) -> None:
        for p in preds:
            if not p.ok:
                self.fh.write(f"{'ERROR':<22} {'':>6}  {'':<9} {p.path}: {p.error}\n")
            elif p.out_of_scope:
                self.fh.write(f"{'OUT OF SCOPE':<22} {'':>6}  {'':<9} {p.path}\n")
            else:
                flag = "uncertain" if p.uncertain else ""
                self.fh.write(f"{p.display_name:<22} {p.confidence:>6.1%}  {flag:<9} {p.path}\n")
            if p.ok and p.note and not p.out_of_scope:
                self.fh.write(f"{'':<22} {'':>6}  {'':<9}   set: {p.note}\n")
        self.fh.flush()

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        if not groups:
            return
        short = {lb: self.backend.display_names.get(lb, lb) for lb in self.labels}
        self.fh.write("\nPer folder (counts; mean probability):\n")
        for g in groups:
            mean = g["mean_probabilities"] or {}
            parts = [f"{short[lb]} {g['counts'][lb]} ({mean.get(lb, 0):.0%})" for lb in self.labels]
            head = (
                f"{g['folder']}: {g['n_images']} images, {g['n_uncertain']} uncertain, "
                f"{g['n_out_of_scope']} out of scope, "
            )
            self.fh.write(head + f"{g['n_errors']} errors; " + "; ".join(parts) + "\n")


class CsvWriter(Writer):
    def __init__(
        self,
        fh: IO[str],
        backend: Backend,
        meta: dict[str, Any],
        groups_path: Path | None = None,
        header: bool = True,
    ) -> None:
        super().__init__(fh, backend, meta)
        self.groups_path = groups_path
        self.csv = csv.writer(fh, lineterminator="\n")
        if header:  # not when appending to a resumed file
            self.csv.writerow(csv_header(self.labels))

    def write(self, preds: list[Prediction]) -> None:
        self.csv.writerows(csv_row(p, self.labels) for p in preds)
        self.fh.flush()

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        if groups is None:
            return
        if self.groups_path is None:
            self.fh.write("\n")
            _write_groups_csv(self.fh, groups, self.labels)
        else:
            with self.groups_path.open("w", newline="", encoding="utf-8") as gh:
                _write_groups_csv(gh, groups, self.labels)


def _write_groups_csv(fh: IO[str], groups: list[dict[str, Any]], labels: list[str]) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(group_csv_header(labels))
    w.writerows(group_csv_row(g, labels) for g in groups)


class JsonWriter(Writer):
    """Writes the JSON document piece by piece, so memory does not grow with the file count."""

    def __init__(self, fh: IO[str], backend: Backend, meta: dict[str, Any]) -> None:
        super().__init__(fh, backend, meta)
        head = json.dumps(meta, indent=2)[:-2]  # drop the closing "\n}"
        self.fh.write(head + ',\n  "predictions": [')
        self.first = True

    def write(self, preds: list[Prediction]) -> None:
        for p in preds:
            self.fh.write(("\n    " if self.first else ",\n    ") + json.dumps(p.to_dict()))
            self.first = False
        self.fh.flush()

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        self.fh.write("\n  ]")
        if groups is not None:
            self.fh.write(',\n  "groups": ' + json.dumps(groups))
        self.fh.write(',\n  "summary": ' + json.dumps(totals.to_dict()) + "\n}\n")


class ParquetDatasetWriter(Writer):
    """Rows into a Parquet dataset folder, one complete part file at a time.

    A Parquet file is unreadable until its footer is written, so a killed writer would lose
    everything in one big file. Here each part is written as `part-NNNNN.parquet.tmp` and
    renamed when closed: after a kill, the folder holds complete parts plus one `.tmp` that
    `--resume` deletes and redoes. Memory: at most one row group of rows is buffered.
    """

    def __init__(
        self,
        folder: Path,
        backend: Backend,
        meta: dict[str, Any],
        first_part: int = 0,
        part_rows: int = 4096,
        group_rows: int = 256,
    ) -> None:
        import pyarrow as pa

        super().__init__(None, backend, meta)
        self.folder = folder
        self.part = first_part
        self.part_rows = max(1, part_rows)
        self.group_rows = max(1, min(group_rows, self.part_rows))
        self.buffer: list[Prediction] = []
        self.writer: Any = None
        self.rows_in_part = 0
        columns = [
            ("path", pa.string()),
            ("label", pa.string()),
            ("display_name", pa.string()),
            ("confidence", pa.float64()),
            ("uncertain", pa.bool_()),
            ("out_of_scope", pa.bool_()),
            ("ood_score", pa.float64()),
            ("prediction_set", pa.string()),
        ]
        columns += [(f"prob_{lb}", pa.float64()) for lb in self.labels]
        columns += [("error", pa.string())]
        self.schema = pa.schema(columns, metadata={"bloodcell": json.dumps(meta)})
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, preds: list[Prediction]) -> None:
        self.buffer.extend(preds)
        while len(self.buffer) >= min(self.group_rows, self.part_rows - self.rows_in_part):
            self._flush(min(self.group_rows, self.part_rows - self.rows_in_part))

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        while self.buffer:
            self._flush(min(len(self.buffer), self.part_rows - self.rows_in_part))
        self._close_part()

    def _flush(self, n: int) -> None:
        """Write the first `n` buffered rows as one row group; close the part when full."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self.buffer = self.buffer[:n], self.buffer[n:]
        if self.writer is None:
            self.writer = pq.ParquetWriter(self._path(".tmp"), self.schema)
        self.writer.write_table(pa.Table.from_pylist([self._row(p) for p in rows], self.schema))
        self.rows_in_part += len(rows)
        if self.rows_in_part >= self.part_rows:
            self._close_part()

    def _close_part(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        os.replace(self._path(".tmp"), self._path(""))  # atomic: a part is whole or absent
        self.writer, self.rows_in_part, self.part = None, 0, self.part + 1

    def _path(self, suffix: str) -> Path:
        return self.folder / f"part-{self.part:05d}.parquet{suffix}"

    def _row(self, p: Prediction) -> dict[str, Any]:
        probs = p.probabilities or {}
        return {
            "path": p.path,
            "label": p.label,
            "display_name": p.display_name,
            "confidence": p.confidence,
            "uncertain": p.uncertain,
            "error": p.error,
            "out_of_scope": p.out_of_scope,
            "ood_score": p.ood_score,
            "prediction_set": "|".join(p.prediction_set) if p.prediction_set else None,
            **{f"prob_{lb}": probs.get(lb) for lb in self.labels},
        }


def make_writer(
    fmt: str,
    fh: IO[str],
    backend: Backend,
    meta: dict[str, Any],
    out: Path | None,
    header: bool = True,
) -> Writer:
    if fmt == "json":
        return JsonWriter(fh, backend, meta)
    if fmt == "csv":
        groups_path = out.with_suffix(".groups.csv") if out is not None else None
        return CsvWriter(fh, backend, meta, groups_path, header=header)
    if fmt == "table":
        return TableWriter(fh, backend, meta)
    raise BloodcellError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def infer_format(fmt: str | None, out: Path | None) -> str:
    """--format wins; else the --out suffix (.csv, .json, .parquet); else a table."""
    if fmt:
        return fmt
    if out is not None and out.suffix.lower().lstrip(".") in ("csv", "json", "parquet"):
        return out.suffix.lower().lstrip(".")
    return "table"


# --- resume ----------------------------------------------------------------------------------


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
            raise BloodcellError(
                f"cannot resume {path}: its columns are not this model's predictions; "
                "choose another --out"
            )
        return {row[0] for row in reader if row}


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


def _check_resume(fmt: str, out: Path | None, group: bool) -> None:
    if out is None or fmt not in RESUMABLE:
        raise BloodcellError("--resume needs --out with a .csv or .parquet output")
    if group:
        raise BloodcellError("--group-by-folder is computed in one go and cannot --resume")


def run_predict(
    model: str | Path | Backend,
    paths: Sequence[str | Path],
    fmt: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 32,
    tta: bool = False,
    group: bool = False,
    uncertain_threshold: float | None = None,
    progress: bool | None = None,
    stdout: IO[str] | None = None,
    resume: bool = False,
    workers: int | None = None,
    parquet_part_rows: int = 4096,
) -> Totals:
    """What `bloodcell predict` does: predict, write in the chosen format, return the totals.

    With `resume`, files already in the CSV/Parquet output `out` are skipped and the rest is
    appended (see the module docstring).
    """
    backend = model if isinstance(model, Backend) else open_backend(model)
    out_path = Path(out) if out else None
    fmt = infer_format(fmt, out_path)
    if fmt not in FORMATS:
        raise BloodcellError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if resume:
        _check_resume(fmt, out_path, group)
    threshold = _threshold(backend, uncertain_threshold)
    meta = {"model": backend.describe(), "tta": tta, "uncertain_threshold": threshold}
    totals = Totals(backend.labels)
    grouper = FolderGrouper(backend.labels) if group else None
    done, writer, fh = _open_output(fmt, out_path, backend, meta, resume, stdout, parquet_part_rows)
    totals.n_skipped = len(done)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    try:
        for batch in predict_paths(
            backend, paths, batch_size, tta, threshold, workers, progress=progress, skip=done
        ):
            writer.write(batch)
            totals.add(batch)
            if grouper is not None:
                grouper.add(batch)
        writer.finish(grouper.summaries() if grouper else None, totals)
    finally:
        if fh is not None and out_path:
            fh.close()
    return totals


def _open_output(
    fmt: str,
    out: Path | None,
    backend: Backend,
    meta: dict[str, Any],
    resume: bool,
    stdout: IO[str] | None,
    part_rows: int,
) -> tuple[set[str], Writer, IO[str] | None]:
    """The paths already done, the writer, and the text file it writes to (None for Parquet)."""
    if fmt == "parquet":
        if out is None:
            raise BloodcellError("Parquet output needs --out FOLDER (e.g. results.parquet)")
        if not resume and out.exists() and any(out.glob("part-*.parquet*")):
            raise BloodcellError(
                f"{out} already holds a Parquet dataset: add --resume to continue it, or "
                "remove it first"
            )
        done, first = parquet_done_paths(out) if resume else (set(), 0)
        return done, ParquetDatasetWriter(out, backend, meta, first, part_rows), None
    done: set[str] = set()
    if resume and out is not None and out.is_file():
        done = csv_done_paths(out, backend.labels)
    append = bool(resume and out is not None and out.is_file() and out.stat().st_size > 0)
    if out is not None:
        fh: IO[str] = out.open("a" if append else "w", newline="", encoding="utf-8")
    else:
        fh = stdout or sys.stdout
    return done, make_writer(fmt, fh, backend, meta, out, header=not append), fh


def format_totals(t: Totals) -> str:
    """The one-line summary printed on stderr after a run."""
    predicted = t.n_files - t.n_errors
    line = (
        f"{t.n_files} file(s): {predicted} predicted, {t.n_out_of_scope} out of scope, "
        f"{t.n_uncertain} uncertain, {t.n_errors} error(s)"
    )
    return line + (f"; {t.n_skipped} already in the output" if t.n_skipped else "")
