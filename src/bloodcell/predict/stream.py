"""Predicting images in batches: decoded ahead by threads, scored by threads of their own,
streamed out batch by batch.

Three things overlap in `predict_paths`, so that the model is never waiting for work it could
be doing:

- decoding and preprocessing (NumPy and Pillow, `Preprocess.cells_image` and `pixels`) of each
  file, by `workers` threads, up to `PREFETCH` batches ahead of the model, written straight
  into the batch's input array; being ahead, they run at a lower priority than the model;
- the model (`Backend.score`), on as many threads as the engine takes batches at once
  (`Backend.concurrent_batches`: one for an engine that spreads a batch over every core, one
  per core for a single-thread ONNX session), batches taken in order: ONNX Runtime and torch
  let go of the GIL while they compute, so the other threads go on meanwhile;
- turning scores into `Prediction` rows and writing them, in the caller's thread, while the
  pools go on with the next batches.

No torch is imported here: with an ONNX engine the whole path is NumPy, Pillow and ONNX Runtime.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Container, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bloodcell.data.files import Shard, iter_image_paths, read_image
from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend, Scored
from bloodcell.predict.records import Prediction, to_predictions

if TYPE_CHECKING:
    from bloodcell.data.cells import Cells
    from bloodcell.data.preprocess import Preprocess

#: Batches decoded ahead of those the model is working on.
PREFETCH = 2
#: How many nice steps below the model the decoding threads run (Linux): they work batches
#: ahead, so when both want a core the model should get it (measured: 131 against 119-134
#: img/s over the dataset, and steadier; BENCHMARKS.md).
DECODE_NICE = 5


def predict_images(
    backend: Backend,
    images: Sequence[Image.Image],
    names: Sequence[str] | None = None,
    tta: bool = False,
    uncertain_threshold: float | None = None,
    cell_guard: bool = True,
) -> list[Prediction]:
    """Predict already-decoded PIL images in one batch. With `cell_guard`, an image in which
    the white-cell finder sees no cell gets no class (`records.NO_CELL_REASON`)."""
    prepared = [prepare_image(backend, img, cell_guard) for img in images]
    return predict_prepared(backend, prepared, names, tta, uncertain_threshold)


@dataclass(frozen=True)
class Prepared:
    """One image made ready for the model: its input (3, S, S) and the white cells the finder
    saw, kept only when the no-white-cell guard applies to it (else None)."""

    input: np.ndarray
    cells: Cells | None


def prepare_image(backend: Backend, image: Image.Image, cell_guard: bool = True) -> Prepared:
    """The model's input for one decoded image: the costly part of a prediction (the finder,
    the scale, the view), done apart so that callers can run it on several threads (the
    server does it in each request's thread, while the model works on other requests)."""
    x, cells = backend.preprocess.prepare_array(_rgb(image), cell_guard)
    return Prepared(x, cells if cell_guard else None)


def predict_prepared(
    backend: Backend,
    prepared: Sequence[Prepared],
    names: Sequence[str] | None = None,
    tta: bool = False,
    uncertain_threshold: float | None = None,
) -> list[Prediction]:
    """Predict prepared images in one model call; each keeps its own guard (`Prepared.cells`)."""
    if not prepared:
        return []
    names = names or [f"image-{i}" for i in range(len(prepared))]
    batch = np.stack([p.input for p in prepared])
    threshold = resolve_threshold(backend, uncertain_threshold)
    cells = [p.cells for p in prepared]
    return to_predictions(names, backend.score(batch, tta), backend, threshold, cells)


def predict_paths(
    backend: Backend,
    paths: Iterable[str | Path],
    batch_size: int = 32,
    tta: bool = False,
    uncertain_threshold: float | None = None,
    workers: int = 2,
    progress: bool | None = False,
    skip: Container[str] = (),
    cell_guard: bool = True,
    shard: Shard | None = None,
) -> Iterator[list[Prediction]]:
    """Stream predictions for files and folders: yields one list per batch, in file order.

    Files are found lazily and decoded by `workers` threads up to `PREFETCH` batches ahead of
    the model, which runs on a thread of its own, so decoding, the model and the caller's
    writing overlap and memory stays flat however many files there are. Files whose path (as
    `str`) is in `skip` are left out (`--resume`). Error rows come in the batch their file was
    in. `cell_guard` as in `predict_images`. With `shard`, only that shard of the files
    (`data.files.Shard`); `skip` applies within it, so a shard resumes like a whole run.
    """
    paths = list(paths)  # the arguments, not the files: small, and walked twice for the bar
    threshold = resolve_threshold(backend, uncertain_threshold)
    todo = (p for p in iter_image_paths(paths, shard) if str(p) not in skip)
    bar = _progress_bar(paths, progress, skip, shard)
    batches = _scored_batches(backend, todo, batch_size, tta, max(1, workers), cell_guard)
    try:
        for done in batches:
            preds = done.predictions(backend, threshold, cell_guard)
            if bar is not None:
                bar.update(len(preds))
            yield preds
    finally:
        batches.close()
        if bar is not None:
            bar.close()


def resolve_threshold(backend: Backend, override: float | None) -> float:
    """The uncertain threshold: the override if given, else the model's; must be in [0, 1]."""
    threshold = backend.uncertain_threshold if override is None else float(override)
    if not 0.0 <= threshold <= 1.0:
        raise BloodcellError(f"uncertain threshold must be in [0, 1], got {threshold}")
    return threshold


@dataclass
class _Batch:
    """One batch of files: where each one's model input goes, and what its decoding gave."""

    paths: list[Path]
    inputs: np.ndarray  # (len(paths), 3, S, S), filled in by the decoding threads
    loaded: list[Future]  # per file: its Cells (or None, guard off), or an error string
    scored: Scored | None = None
    found: list[Cells | str | None] | None = None

    def good(self) -> list[int]:
        assert self.found is not None
        return [i for i, x in enumerate(self.found) if not isinstance(x, str)]

    def predictions(self, backend: Backend, threshold: float, guard: bool) -> list[Prediction]:
        """The rows of this batch, in file order: errors where a file could not be read."""
        assert self.found is not None
        results: dict[int, Prediction] = {
            i: Prediction(path=str(self.paths[i]), error=x)
            for i, x in enumerate(self.found)
            if isinstance(x, str)
        }
        good = self.good()
        if good:
            assert self.scored is not None
            names = [str(self.paths[i]) for i in good]
            cells = [self.found[i] for i in good] if guard else None
            preds = to_predictions(names, self.scored, backend, threshold, cells)  # type: ignore[arg-type]
            results.update(zip(good, preds, strict=True))
        return [results[i] for i in range(len(self.paths))]


def _scored_batches(
    backend: Backend, todo: Iterator[Path], batch_size: int, tta: bool, workers: int, guard: bool
) -> Generator[_Batch]:
    """The batches of `todo`, scored, in file order.

    Each batch's files go to the decoding pool and the batch to the model pool at once (the
    model task waits for its files); a deque of the model's futures, at most `PREFETCH` more
    than the model takes at once, keeps the order and bounds the memory. The caller works on
    a yielded batch while the pools go on; closing the generator cancels what has not started.
    """
    parallel = max(1, backend.concurrent_batches)
    decoding = ThreadPoolExecutor(
        workers, thread_name_prefix="bloodcell-decode", initializer=yield_to_model
    )
    models = ThreadPoolExecutor(parallel, thread_name_prefix="bloodcell-model")
    in_flight: deque[Future[_Batch]] = deque()
    try:
        for chunk in _chunks(todo, max(1, int(batch_size))):
            batch = _decode(decoding, backend.preprocess, chunk, guard)
            in_flight.append(models.submit(_score, backend, batch, tta))
            if len(in_flight) > PREFETCH + parallel:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:  # the decoding first: a model task waiting on a cancelled file then ends too
        decoding.shutdown(wait=True, cancel_futures=True)
        models.shutdown(wait=True, cancel_futures=True)


def _decode(pool: ThreadPoolExecutor, pre: Preprocess, chunk: list[Path], guard: bool) -> _Batch:
    """A batch whose files the pool decodes and preprocesses straight into its input array."""
    size = pre.image_size
    inputs = np.empty((len(chunk), 3, size, size), np.float32)

    def load(path: Path, out: np.ndarray) -> Cells | str | None:
        try:
            image, cells = pre.cells_image(read_image(path), guard)
            pre.pixels(image, out=out)
            return cells
        except BloodcellError as exc:
            return str(exc)

    loaded = [pool.submit(load, p, inputs[i]) for i, p in enumerate(chunk)]
    return _Batch(chunk, inputs, loaded)


def _score(backend: Backend, batch: _Batch, tta: bool) -> _Batch:
    batch.found = [f.result() for f in batch.loaded]
    good = batch.good()
    if good:
        inputs = batch.inputs if len(good) == len(batch.paths) else batch.inputs[good]
        batch.scored = backend.score(inputs, tta)
    return batch


def yield_to_model() -> None:
    """Lower the calling thread's priority by `DECODE_NICE` (a decoding pool's initializer).
    Linux only, where a thread's id names it to `setpriority`; elsewhere, or when the system
    refuses, the thread keeps the process's priority."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + DECODE_NICE)
    except OSError:
        pass


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


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
    paths: Iterable[str | Path],
    progress: bool | None,
    skip: Container[str] = (),
    shard: Shard | None = None,
) -> Any:
    """A tqdm bar on stderr; `None` shows it only on a terminal. Counting the files first is a
    cheap directory walk that gives the bar a total."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    total = sum(1 for p in iter_image_paths(paths, shard) if str(p) not in skip)
    return tqdm(total=total, unit="img", desc="predict", file=sys.stderr)
