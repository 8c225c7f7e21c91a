"""What `bloodcell predict` does: open the model and the output, stream the batches through."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from bloodcell.data.files import Shard
from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend
from bloodcell.models.engines import open_model
from bloodcell.predict.grouping import FolderGrouper, Totals
from bloodcell.predict.resume import check_resume, done_paths, parquet_done_paths
from bloodcell.predict.stream import predict_paths, resolve_threshold
from bloodcell.predict.writers import FORMATS, Writer, infer_format, make_writer
from bloodcell.predict.writers_parquet import ParquetDatasetWriter
from bloodcell.records import OutputMeta


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
    engine: str = "auto",
    cell_guard: bool = True,
    shard: Shard | None = None,
) -> Totals:
    """What `bloodcell predict` does: predict, write in the chosen format, return the totals.

    With `resume`, files already in the CSV, JSON Lines or Parquet output `out` are skipped and
    the rest is appended (see the package docstring). `engine` chooses how a model path is
    run (`models.engines.open_model`); every row names the engine that answered. With
    `cell_guard` (the default) an image with no white cell found is refused. With `shard`,
    only that contiguous part of the files (`data.files.Shard`): the shards' outputs, one after
    the other in shard order, hold the rows of one run over everything, in its order.
    """
    if shard is not None and group:
        raise BloodcellError(
            "--group-by-folder sums whole folders and a folder can span two shards; run it "
            "without --shard, or sum the merged rows"
        )
    backend = model if isinstance(model, Backend) else open_for_files(model, engine)
    out_path = Path(out) if out else None
    fmt = infer_format(fmt, out_path)
    if fmt not in FORMATS:
        raise BloodcellError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if resume:
        check_resume(fmt, out_path, group)
    threshold = resolve_threshold(backend, uncertain_threshold)
    meta: OutputMeta = {"model": backend.describe(), "tta": tta, "uncertain_threshold": threshold}
    totals = Totals(backend.labels)
    grouper = FolderGrouper(backend.labels) if group else None
    done, writer, fh = _open_output(fmt, out_path, backend, meta, resume, stdout, parquet_part_rows)
    totals.n_skipped = len(done)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    try:
        for batch in predict_paths(
            backend,
            paths,
            batch_size,
            tta,
            threshold,
            workers,
            progress=progress,
            skip=done,
            cell_guard=cell_guard,
            shard=shard,
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


def open_for_files(model: str | Path, engine: str = "auto") -> Backend:
    """`open_model` set up for predicting files: one ONNX Runtime thread per run and a batch
    per core at once, which keeps up better than one run over every core while decoding
    shares the cores (`OnnxBackend`; measured by `benchmarks/predict_folder.py`)."""
    return open_model(model, engine, threads=1)


def _open_output(
    fmt: str,
    out: Path | None,
    backend: Backend,
    meta: OutputMeta,
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
    done = done_paths(fmt, out, backend.labels) if resume and out is not None else set()
    append = bool(resume and out is not None and out.is_file() and out.stat().st_size > 0)
    if out is not None:
        fh: IO[str] = out.open("a" if append else "w", newline="", encoding="utf-8")
    else:
        fh = stdout or sys.stdout
    return done, make_writer(fmt, fh, backend, meta, out, header=not append), fh
