"""The one way to open a model: `open_model(path, engine)` returns the `Backend` that answers.

A model directory can hold three engines for the same weights: torch eager
(`model.safetensors`, always there), ONNX fp32 (`model.onnx`) and ONNX int8 (`model.int8.onnx`),
both written by `bloodcell export` (and by `bloodcell train` / `bloodcell run` unless told not
to). The export checks each ONNX file against the model on the validation split and records
the result under `"engines"` in `metrics.json`. `engine="auto"` takes the fastest engine whose
check passed for these very weights, so a user gets the int8 speed without knowing it exists,
and never an engine that was not checked. torch stays the fallback and what Grad-CAM uses.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bloodcell.errors import BloodcellError, ModelError
from bloodcell.models.backends import Backend, OnnxBackend
from bloodcell.models.saved import SavedModel, load_model, read_model, saved_scope_detector
from bloodcell.records import EngineCheck, EngineRecords
from bloodcell.run_dir import INT8_ONNX_FILE, ONNX_FILE, ModelDir

if TYPE_CHECKING:
    from bloodcell.models.torch_backend import TorchBackend

log = logging.getLogger(__name__)

#: What `--engine` accepts everywhere.
ENGINES = ("auto", "torch", "onnx", "onnx-int8")
#: The ONNX engines' files in a model directory.
ENGINE_FILES = {"onnx": ONNX_FILE, "onnx-int8": INT8_ONNX_FILE}
#: What `auto` tries, fastest first; torch when none of them passes.
FASTEST_FIRST: tuple[Literal["onnx-int8"], Literal["onnx"]] = ("onnx-int8", "onnx")
#: Key of the engine checks in the model's metrics.json.
ENGINES_KEY = "engines"


def check_engine(engine: str) -> str:
    """`engine` if it is one of ENGINES, else an error naming the allowed values."""
    if engine not in ENGINES:
        raise BloodcellError(
            f"--engine {engine!r} is not known; choose one of {', '.join(ENGINES)}"
        )
    return engine


def weights_digest(model_dir: Path) -> str:
    """sha256 of the weights: an engine check counts only for the weights it was made on."""
    return hashlib.sha256(ModelDir(model_dir).weights.read_bytes()).hexdigest()


def open_model(path: str | Path, engine: str = "auto", threads: int | None = None) -> Backend:
    """Open a run directory, model directory or `.onnx` file with the chosen engine.

    `auto` picks the fastest engine in the model directory whose check passed; `torch`, `onnx`
    and `onnx-int8` ask for one (an error says how to create a missing file). An `.onnx` path is
    opened as it is. Only what the answer needs is loaded: an ONNX engine reads the model
    directory's config and metrics, never its torch weights (torch is not imported).
    """
    check_engine(engine)
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if engine == "torch":
            raise ModelError(f"{path}: an ONNX file cannot run on the torch engine")
        return OnnxBackend(path, threads=threads)
    saved = read_model(path)
    if engine == "auto":
        return _fastest_checked(saved, threads) or open_torch(saved.path)
    if engine in FASTEST_FIRST:
        return _open_onnx(saved, engine, threads, engine_records(saved).get(engine))
    return open_torch(saved.path)


def open_torch(model_dir: str | Path) -> TorchBackend:
    """The torch engine on a run or model directory (imports torch)."""
    from bloodcell.models.torch_backend import TorchBackend

    return TorchBackend(load_model(model_dir))


def engine_records(saved: SavedModel) -> EngineRecords:
    """The export's checks of the ONNX engines (empty when nothing was exported)."""
    return saved.metrics.get("engines") or {}


def _fastest_checked(saved: SavedModel, threads: int | None) -> Backend | None:
    records = engine_records(saved)
    digest = None
    for engine in FASTEST_FIRST:
        record = records.get(engine) or {}
        if not record.get("verified"):
            continue
        digest = digest or weights_digest(saved.path)
        if record.get("weights_sha256") != digest:
            log.warning("%s was checked on other weights: skipped (re-export)", engine)
            continue
        try:
            return _open_onnx(saved, engine, threads, record)
        except ModelError as exc:
            log.warning("%s: %s; trying the next engine", engine, exc)
    return None


def _open_onnx(
    saved: SavedModel, engine: str, threads: int | None, record: EngineCheck | None
) -> OnnxBackend:
    model_dir = saved.path
    file = model_dir / ENGINE_FILES[engine]
    if not file.is_file():
        how = " --quantize int8" if engine == "onnx-int8" else ""
        raise ModelError(
            f"{file} not found: the {engine} engine needs it; create it with "
            f"`bloodcell export {model_dir}{how}` or use --engine auto"
        )
    backend = OnnxBackend(file, threads=threads)
    if backend.labels != saved.labels or backend.preprocess != saved.preprocess:
        raise ModelError(f"{file} does not match {model_dir}: re-export it")
    backend.use_calibration(saved.config, saved_scope_detector(saved.path, saved.config), record)
    return backend
