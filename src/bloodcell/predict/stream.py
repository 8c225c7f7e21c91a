"""Predicting images in batches: decoded ahead by threads, scored by a thread of its own,
streamed out batch by batch.

Three things overlap in `predict_paths`, so that the model is never waiting for work it could
be doing:

- decoding and preprocessing (NumPy and Pillow, `Preprocess.prepare_array`) of each file, by
  `workers` threads, up to `PREFETCH` batches ahead of the model, written straight into the
  batch's input array; being ahead, they run at a lower priority than the model;
- the model (`Backend.score`), on as many threads as the engine takes batches at once
  (`Backend.concurrent_batches`: one for an engine that spreads a batch over every core, one
  per core for a single-thread ONNX session), batches taken in order: ONNX Runtime and torch
  let go of the GIL while they compute, so the other threads go on meanwhile;
- turning scores into `Prediction` rows and writing them, in the caller's thread: the scorer
  has already started on the next batch by then (up to `AHEAD` scored batches wait).

No torch is imported here: with an ONNX engine the whole path is NumPy, Pillow and ONNX Runtime.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
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

#: Batches decoded ahead of the one the model is working on.
PREFETCH = 2
#: Scored batches that may wait for the writer before the scorer waits in turn.
AHEAD = 2
#: How often (s) a blocked hand-over checks whether the other side has stopped.
_POLL = 0.1
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
    scorer = _Scorer(backend, todo, batch_size, tta, max(1, workers), cell_guard)
    try:
        for done in scorer.results():
            preds = done.predictions(backend, threshold, cell_guard)
            if bar is not None:
                bar.update(len(preds))
            yield preds
    finally:
        scorer.stop()
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


class _Scorer:
    """The decoding pool, the model pool and the feeding thread of one `predict_paths` call.

    The feeding thread walks the files, hands each batch's files to the decoding pool as soon
    as there is room for it (`PREFETCH` batches ahead), gives the oldest decoded batch to the
    model pool (as many at once as the engine takes), and puts the scored batches on `out` in
    order; `results` hands them to the caller. Any error on either pool reaches the caller
    there; `stop` ends every side (the caller stopped early, or all is done).
    """

    _END = object()

    def __init__(
        self,
        backend: Backend,
        todo: Iterator[Path],
        batch_size: int,
        tta: bool,
        workers: int,
        guard: bool,
    ) -> None:
        self.backend = backend
        self.todo = todo
        self.batch_size = max(1, int(batch_size))
        self.tta = tta
        self.guard = guard
        self.pool = ThreadPoolExecutor(
            workers, thread_name_prefix="bloodcell-decode", initializer=yield_to_model
        )
        self.parallel = max(1, backend.concurrent_batches)
        self.models = ThreadPoolExecutor(self.parallel, thread_name_prefix="bloodcell-model")
        self.out: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bloodcell-feed", daemon=True)
        self.thread.start()

    # --- the caller's side -----------------------------------------------------------------

    def results(self) -> Iterator[_Batch]:
        while True:
            item = self.out.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        while self.thread.is_alive():  # let a model thread blocked on a full queue finish
            try:
                self.out.get(timeout=_POLL)
            except queue.Empty:
                pass
        self.thread.join()
        self.models.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    # --- the feeding thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            pending: deque[_Batch] = deque()  # being decoded
            scoring: deque[Future[_Batch]] = deque()  # with the model
            for chunk in _chunks(self.todo, self.batch_size):
                if self.stopping.is_set():
                    return
                pending.append(self._submit(chunk))
                if len(pending) > PREFETCH:
                    self._start(pending.popleft(), scoring)
            while pending and not self.stopping.is_set():
                self._start(pending.popleft(), scoring)
            while scoring and not self.stopping.is_set():
                self._put(scoring.popleft().result())
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - the caller re-raises it
            self._put(exc)

    def _start(self, batch: _Batch, scoring: deque[Future[_Batch]]) -> None:
        """Give `batch` to the model pool, once fewer batches than it takes at once are there
        (the oldest scored ones are handed out first, in order)."""
        while len(scoring) >= self.parallel:
            self._put(scoring.popleft().result())
        scoring.append(self.models.submit(self._score, batch))

    def _submit(self, chunk: list[Path]) -> _Batch:
        size = self.backend.preprocess.image_size
        inputs = np.empty((len(chunk), 3, size, size), np.float32)
        load = self._loader()
        loaded = [self.pool.submit(load, p, inputs[i]) for i, p in enumerate(chunk)]
        return _Batch(chunk, inputs, loaded)

    def _loader(self) -> Callable[[Path, np.ndarray], Any]:
        pre, guard = self.backend.preprocess, self.guard

        def load(path: Path, out: np.ndarray) -> Cells | str | None:
            try:
                image, cells = pre.cells_image(read_image(path), guard)
                pre.pixels(image, out=out)
                return cells
            except BloodcellError as exc:
                return str(exc)

        return load

    def _score(self, batch: _Batch) -> _Batch:
        batch.found = [f.result() for f in batch.loaded]
        good = batch.good()
        if good:
            inputs = batch.inputs if len(good) == len(batch.paths) else batch.inputs[good]
            batch.scored = self.backend.score(inputs, self.tta)
        return batch

    def _put(self, item: Any) -> None:
        while not self.stopping.is_set():
            try:
                self.out.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue


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
