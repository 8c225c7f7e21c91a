"""Predicting images in batches: decoded ahead by threads, streamed out batch by batch."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Container, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bloodcell.data.cells import Cells
from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend
from bloodcell.predict.paths import iter_image_paths, read_image
from bloodcell.predict.records import Prediction, to_predictions

#: A decoded file: its model input and the white cells found (None with the guard off).
Prepared = tuple[torch.Tensor, Cells | None]

#: Batches decoded ahead of the one the model is working on.
PREFETCH = 2


def predict_images(
    backend: Backend,
    images: Sequence[Image.Image],
    names: Sequence[str] | None = None,
    tta: bool = False,
    uncertain_threshold: float | None = None,
    cell_guard: bool = True,
) -> list[Prediction]:
    """Predict already-decoded PIL images (e.g. uploads) in one batch. With `cell_guard`, an
    image in which the white-cell finder sees no cell gets no class (`records.NO_CELL_REASON`)."""
    if not images:
        return []
    names = names or [f"image-{i}" for i in range(len(images))]
    prepared = [backend.preprocess.prepare(img.convert("RGB"), cell_guard) for img in images]
    batch = torch.stack([x for x, _ in prepared])
    threshold = resolve_threshold(backend, uncertain_threshold)
    cells = [c for _, c in prepared] if cell_guard else None
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
) -> Iterator[list[Prediction]]:
    """Stream predictions for files and folders: yields one list per batch, in file order.

    Files are found lazily and decoded by `workers` threads up to `PREFETCH` batches ahead of
    the model, so decoding overlaps inference and memory stays flat however many files there
    are. Files whose path (as `str`) is in `skip` are left out (`--resume`). Error rows come in
    the batch their file was in. `cell_guard` as in `predict_images`.
    """
    paths = list(paths)  # the arguments, not the files: small, and walked twice for the bar
    threshold = resolve_threshold(backend, uncertain_threshold)

    def load(path: Path) -> Prepared | str:
        try:
            return backend.preprocess.prepare(read_image(path), cell_guard)
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


def resolve_threshold(backend: Backend, override: float | None) -> float:
    """The uncertain threshold: the override if given, else the model's; must be in [0, 1]."""
    threshold = backend.uncertain_threshold if override is None else float(override)
    if not 0.0 <= threshold <= 1.0:
        raise BloodcellError(f"uncertain threshold must be in [0, 1], got {threshold}")
    return threshold


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
    loaded: list[Prepared | str],
    tta: bool,
    threshold: float,
) -> list[Prediction]:
    good = [i for i, x in enumerate(loaded) if not isinstance(x, str)]
    results: dict[int, Prediction] = {
        i: Prediction(path=str(chunk[i]), error=x)
        for i, x in enumerate(loaded)
        if isinstance(x, str)
    }
    if good:
        batch = torch.stack([loaded[i][0] for i in good])
        cells = [loaded[i][1] for i in good]
        names = [str(chunk[i]) for i in good]
        scored = backend.score(batch, tta)
        preds = to_predictions(names, scored, backend, threshold, cells)
        results.update(zip(good, preds, strict=True))
    return [results[i] for i in range(len(chunk))]


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
