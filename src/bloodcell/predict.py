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

JSON schema (`--format json`), one document, written as it goes::

    {"model": {"path", "backend", "architecture", "labels", "temperature",
               "uncertain_threshold", "image_size", ...},
     "tta": bool, "uncertain_threshold": float,
     "predictions": [
        {"path": str, "label": str|null, "display_name": str|null,
         "confidence": float|null, "uncertain": bool|null,
         "probabilities": {label: float, ...}|null, "error": str|null}, ...],
     "groups": [GROUP, ...],          # only with --group-by-folder
     "summary": {"n_files", "n_predicted", "n_errors", "n_uncertain", "counts": {label: int}}}

    GROUP = {"folder": str, "n_images": int, "n_errors": int, "n_uncertain": int,
             "counts": {label: int}, "mean_probabilities": {label: float}|null}

CSV schema (`--format csv`), one row per file, header first::

    path,label,display_name,confidence,uncertain,prob_benign,prob_early_pre_b,prob_pre_b,
    prob_pro_b,error

`uncertain` is `true`/`false`; on error rows every column but `path` and `error` is empty.
With `--group-by-folder`, the groups go to `<out stem>.groups.csv` (or, on stdout, after one
blank line) with columns `folder,n_images,n_errors,n_uncertain,count_<label>...,
mean_prob_<label>...`.

Exit status of `bloodcell predict`: 0 when at least one image was predicted (error rows do not
fail the run; they are in the output), 1 when none could be.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bloodcell.data.dataset import load_rgb
from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend, open_backend

FORMATS = ("table", "csv", "json")


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
    """Decode a file as RGB, raising BloodcellError with a reason a person understands."""
    path = Path(path)
    try:
        if not path.exists():
            raise BloodcellError("no such file")
        if path.is_file() and path.stat().st_size == 0:
            raise BloodcellError("empty file (0 bytes)")
        return load_rgb(path)
    except BloodcellError:
        raise
    except UnidentifiedImageError:
        raise BloodcellError("not an image (unknown or unsupported file format)") from None
    except Image.DecompressionBombError as exc:
        raise BloodcellError(f"image too large to decode safely: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BloodcellError(f"corrupt or unreadable image: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an error row
        raise BloodcellError(f"cannot decode image: {type(exc).__name__}: {exc}") from None


# --- inference -------------------------------------------------------------------------------


def dihedral_views(batch: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 flips/90-degree rotations of an (N, C, H, W) batch, identity first."""
    for flipped in (batch, batch.flip(-1)):
        for k in range(4):
            yield torch.rot90(flipped, k, dims=(-2, -1)).contiguous()


def predict_proba(backend: Backend, batch: torch.Tensor, tta: bool = False) -> np.ndarray:
    """Calibrated probabilities (N, C) of a preprocessed batch, TTA-averaged if asked."""
    if not tta:
        return backend.predict_proba(batch)
    total = np.zeros((batch.shape[0], len(backend.labels)), dtype=np.float64)
    for view in dihedral_views(batch):
        total += backend.predict_proba(view)
    return (total / 8).astype(np.float32)


def to_predictions(
    names: Sequence[str], probs: np.ndarray, backend: Backend, threshold: float
) -> list[Prediction]:
    """Turn probability rows into Prediction records (label, display name, uncertain flag)."""
    out = []
    for name, row in zip(names, probs, strict=True):
        i = int(np.argmax(row))
        label = backend.labels[i]
        conf = float(row[i])
        out.append(
            Prediction(
                path=name,
                label=label,
                display_name=backend.display_names.get(label, label),
                confidence=round(conf, 6),
                uncertain=conf < threshold,
                probabilities=dict(zip(backend.labels, _rounded(row), strict=True)),
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
    return to_predictions(names, predict_proba(backend, batch, tta), backend, threshold)


def predict_paths(
    backend: Backend,
    paths: Iterable[str | Path],
    batch_size: int = 32,
    tta: bool = False,
    uncertain_threshold: float | None = None,
    workers: int = 2,
    progress: bool | None = False,
) -> Iterator[list[Prediction]]:
    """Stream predictions for files and folders: yields one list per batch, in file order.

    Files are found lazily and decoded by `workers` threads, so memory stays flat however many
    files there are. Error rows come in the batch their file was in.
    """
    paths = list(paths)  # the arguments, not the files: small, and walked twice for the bar
    threshold = _threshold(backend, uncertain_threshold)
    transform = backend.preprocess.transform()

    def load(path: Path) -> torch.Tensor | str:
        try:
            return transform(read_image(path))
        except BloodcellError as exc:
            return str(exc)

    bar = _progress_bar(paths, progress)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for chunk in _chunks(iter_image_paths(paths), batch_size):
            loaded = list(pool.map(load, chunk))
            yield _predict_chunk(backend, chunk, loaded, tta, threshold)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()


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
            [str(chunk[i]) for i in good], predict_proba(backend, batch, tta), backend, threshold
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


def _progress_bar(paths: Iterable[str | Path], progress: bool | None) -> Any:
    """A tqdm bar on stderr; `None` shows it only on a terminal. Counting the files first is a
    cheap directory walk that gives the bar a total."""
    if progress is False:
        return None
    from tqdm import tqdm

    total = sum(1 for _ in iter_image_paths(paths))
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
    counts: dict[str, int] = field(default_factory=dict)
    prob_sum: np.ndarray | None = None

    def add(self, p: Prediction) -> None:
        if not p.ok:
            self.n_errors += 1
            return
        self.n_images += 1
        self.n_uncertain += int(bool(p.uncertain))
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
        self.n_files = self.n_errors = self.n_uncertain = 0
        self.counts = dict.fromkeys(self.labels, 0)

    def add(self, preds: Iterable[Prediction]) -> None:
        for p in preds:
            self.n_files += 1
            if not p.ok:
                self.n_errors += 1
                continue
            self.counts[p.label] += 1
            self.n_uncertain += int(bool(p.uncertain))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_files": self.n_files,
            "n_predicted": self.n_files - self.n_errors,
            "n_errors": self.n_errors,
            "n_uncertain": self.n_uncertain,
            "counts": dict(self.counts),
        }


def csv_header(labels: Sequence[str]) -> list[str]:
    return ["path", "label", "display_name", "confidence", "uncertain"] + [
        f"prob_{lb}" for lb in labels
    ] + ["error"]


def csv_row(p: Prediction, labels: Sequence[str]) -> list[str]:
    if not p.ok:
        return [p.path, "", "", "", ""] + [""] * len(labels) + [p.error or ""]
    probs = [f"{p.probabilities[lb]:.6f}" for lb in labels]
    return [p.path, p.label, p.display_name, f"{p.confidence:.6f}", _bool(p.uncertain)] + probs + [
        ""
    ]


def group_csv_header(labels: Sequence[str]) -> list[str]:
    return ["folder", "n_images", "n_errors", "n_uncertain"] + [
        f"count_{lb}" for lb in labels
    ] + [f"mean_prob_{lb}" for lb in labels]


def group_csv_row(g: dict[str, Any], labels: Sequence[str]) -> list[Any]:
    mean = g["mean_probabilities"]
    return [g["folder"], g["n_images"], g["n_errors"], g["n_uncertain"]] + [
        g["counts"][lb] for lb in labels
    ] + [f"{mean[lb]:.6f}" if mean else "" for lb in labels]


def _bool(v: bool | None) -> str:
    return "" if v is None else str(bool(v)).lower()


class Writer:
    """Writes predictions batch by batch; `finish` adds groups and closing text."""

    def __init__(self, fh: IO[str], backend: Backend, meta: dict[str, Any]) -> None:
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
            if p.ok:
                flag = "uncertain" if p.uncertain else ""
                self.fh.write(f"{p.display_name:<22} {p.confidence:>6.1%}  {flag:<9} {p.path}\n")
            else:
                self.fh.write(f"{'ERROR':<22} {'':>6}  {'':<9} {p.path}: {p.error}\n")
        self.fh.flush()

    def finish(self, groups: list[dict[str, Any]] | None, totals: Totals) -> None:
        if not groups:
            return
        short = {lb: self.backend.display_names.get(lb, lb) for lb in self.labels}
        self.fh.write("\nPer folder (counts; mean probability):\n")
        for g in groups:
            mean = g["mean_probabilities"] or {}
            parts = [f"{short[lb]} {g['counts'][lb]} ({mean.get(lb, 0):.0%})" for lb in self.labels]
            head = f"{g['folder']}: {g['n_images']} images, {g['n_uncertain']} uncertain, "
            self.fh.write(head + f"{g['n_errors']} errors; " + "; ".join(parts) + "\n")


class CsvWriter(Writer):
    def __init__(
        self, fh: IO[str], backend: Backend, meta: dict[str, Any], groups_path: Path | None = None
    ) -> None:
        super().__init__(fh, backend, meta)
        self.groups_path = groups_path
        self.csv = csv.writer(fh, lineterminator="\n")
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


def make_writer(
    fmt: str, fh: IO[str], backend: Backend, meta: dict[str, Any], out: Path | None
) -> Writer:
    if fmt == "json":
        return JsonWriter(fh, backend, meta)
    if fmt == "csv":
        groups_path = out.with_suffix(".groups.csv") if out is not None else None
        return CsvWriter(fh, backend, meta, groups_path)
    if fmt == "table":
        return TableWriter(fh, backend, meta)
    raise BloodcellError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def infer_format(fmt: str | None, out: Path | None) -> str:
    """--format wins; else the --out suffix (.csv, .json); else a table."""
    if fmt:
        return fmt
    if out is not None and out.suffix.lower().lstrip(".") in ("csv", "json"):
        return out.suffix.lower().lstrip(".")
    return "table"


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
) -> Totals:
    """What `bloodcell predict` does: predict, write in the chosen format, return the totals."""
    backend = model if isinstance(model, Backend) else open_backend(model)
    out_path = Path(out) if out else None
    fmt = infer_format(fmt, out_path)
    threshold = _threshold(backend, uncertain_threshold)
    meta = {"model": backend.describe(), "tta": tta, "uncertain_threshold": threshold}
    totals = Totals(backend.labels)
    grouper = FolderGrouper(backend.labels) if group else None
    fh = out_path.open("w", newline="", encoding="utf-8") if out_path else (stdout or sys.stdout)
    try:
        writer = make_writer(fmt, fh, backend, meta, out_path)
        for batch in predict_paths(
            backend, paths, batch_size, tta, threshold, progress=progress
        ):
            writer.write(batch)
            totals.add(batch)
            if grouper is not None:
                grouper.add(batch)
        writer.finish(grouper.summaries() if grouper else None, totals)
    finally:
        if out_path:
            fh.close()
    return totals


def format_totals(t: Totals) -> str:
    """The one-line summary printed on stderr after a run."""
    predicted = t.n_files - t.n_errors
    return (
        f"{t.n_files} file(s): {predicted} predicted, {t.n_uncertain} uncertain, "
        f"{t.n_errors} error(s)"
    )
