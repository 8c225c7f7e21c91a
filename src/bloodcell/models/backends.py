"""One inference interface over two engines: torch eager (a saved model) and ONNX Runtime.

`models.engines.open_model(path, engine)` takes a run directory, a model directory or an
exported `.onnx` file and returns a `Backend` that knows its class names, preprocessing,
calibration temperature and `uncertain` threshold, and, when the model has them, its
out-of-scope detector and conformal prediction sets. Prediction, evaluation and the server call
only this interface, so an `.onnx` file is a drop-in replacement for the torch model.

The ONNX file carries what the model directory's `config.json` carries, as `metadata_props`
(keys in `META_KEYS`, values JSON-encoded), so the file alone is enough to predict.

This module imports no torch: an ONNX engine answers with NumPy and ONNX Runtime alone.
`TorchBackend` and the dataset loops (`dataset_outputs`, ...) are in `models.torch_backend`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.data.preprocess import Preprocess
from bloodcell.errors import ModelError
from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.cell_gate import CellGate, top_probability
from bloodcell.models.conformal import ConformalSets
from bloodcell.models.saved import DEFAULT_UNCERTAIN_THRESHOLD
from bloodcell.records import EngineCheck, ModelSummary, Quantization, ScopeDetectorRecord

#: Names of the ONNX graph's input and output.
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
#: The further output of a graph exported with an out-of-scope detector.
ONNX_OOD_SCORE = "ood_score"
#: metadata_props keys written by `bloodcell export` (values are JSON).
META_KEYS = (
    "bloodcell.format",
    "architecture",
    "labels",
    "display_names",
    "preprocess",
    "temperature",
    "uncertain_threshold",
    "quantization",
    "ood",
    "conformal",
    "cell_gate",
)
ONNX_FORMAT = "bloodcell-onnx/1"

#: A preprocessed batch (N, 3, S, S): a NumPy array, or a torch tensor from a DataLoader.
ArrayLike = Any


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis of `logits / temperature`."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Outputs:
    """One batch through a backend: raw logits, and out-of-scope scores if it has a detector."""

    logits: np.ndarray
    ood_score: np.ndarray | None = None


@dataclass(frozen=True)
class Scored:
    """A batch's calibrated probabilities (N, C), out-of-scope scores (N,) if any, and the
    top class probability before calibration (N,), what the cell-type gate reads."""

    probs: np.ndarray
    ood_score: np.ndarray | None = None
    top: np.ndarray | None = None


def as_array(batch: ArrayLike) -> np.ndarray:
    """A batch as a contiguous float32 NumPy array (a torch tensor is viewed, not imported)."""
    if hasattr(batch, "detach"):  # a torch tensor
        batch = batch.detach().cpu().numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


def dihedral_views(batch: np.ndarray) -> Iterator[np.ndarray]:
    """The 8 flips/90-degree rotations of an (N, C, H, W) batch, identity first (the order and
    direction of `torch.rot90`)."""
    for flipped in (batch, batch[..., ::-1]):
        for k in range(4):
            yield np.ascontiguousarray(np.rot90(flipped, k, axes=(-2, -1)))


class Backend:
    """What every engine offers: metadata, logits, calibrated probabilities, out-of-scope
    scores and prediction sets."""

    #: The engine that answers: "torch", "onnx" or "onnx-int8" (what `--engine` names).
    engine: str = "?"
    path: Path
    architecture: str
    labels: list[str]
    display_names: dict[str, str]
    preprocess: Preprocess
    temperature: float
    uncertain_threshold: float
    #: Above this score an image is out of scope; None when the model has no detector.
    ood_threshold: float | None = None
    scope_info: ScopeDetectorRecord | None = None
    conformal: ConformalSets | None = None
    #: Refuses white cells of types the model does not classify; None without one.
    cell_gate: CellGate | None = None
    #: What the model records about itself: config.json, or an ONNX file's metadata.
    config: Mapping[str, Any]
    #: How many batches to give the engine at once (from as many threads): 1 for an engine that
    #: spreads one batch over all cores itself.
    concurrent_batches: int = 1

    def run(self, batch: ArrayLike) -> Outputs:
        """Logits (N, C) and out-of-scope scores (N,) for a preprocessed batch (N, 3, S, S)."""
        raise NotImplementedError

    def predict_logits(self, batch: ArrayLike) -> np.ndarray:
        """Raw logits (N, C) for a preprocessed float batch (N, 3, S, S)."""
        return self.run(batch).logits

    def out_of_scope(self, scores: np.ndarray | None) -> np.ndarray | None:
        """Which scores are over the threshold (None without a detector)."""
        if scores is None or self.ood_threshold is None:
            return None
        return np.asarray(scores) > self.ood_threshold

    def predict_proba(self, batch: ArrayLike, calibrated: bool = True) -> np.ndarray:
        """Class probabilities (N, C); temperature-scaled unless `calibrated=False`."""
        return softmax(self.predict_logits(batch), self.temperature if calibrated else 1.0)

    def score(self, batch: ArrayLike, tta: bool = False) -> Scored:
        """Calibrated probabilities and out-of-scope scores: what every answer is made from.

        With `tta`, both are the mean over the 8 dihedral views (smears have no orientation).
        """
        batch = as_array(batch)
        views = list(dihedral_views(batch)) if tta else [batch]
        probs = np.zeros((batch.shape[0], len(self.labels)), dtype=np.float64)
        top = np.zeros(batch.shape[0], dtype=np.float64)
        scores: np.ndarray | None = None
        for view in views:
            out = self.run(view)
            probs += softmax(out.logits, self.temperature)
            top += top_probability(out.logits)
            if out.ood_score is not None:
                scores = out.ood_score if scores is None else scores + out.ood_score
        n = len(views)
        return Scored(
            (probs / n).astype(np.float32), None if scores is None else scores / n, top / n
        )

    def describe(self) -> ModelSummary:
        """A JSON-able summary for reports, `predict --format json` and the server."""
        return {
            "path": str(self.path),
            "engine": self.engine,
            "backend": self.engine,  # the same, under its first name: kept for older readers
            "architecture": self.architecture,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "uncertain_threshold": self.uncertain_threshold,
            "image_size": self.preprocess.image_size,
            "ood": self.scope_info,
            "conformal_coverage": self.conformal.coverage if self.conformal else None,
            "cell_gate": self.cell_gate.to_config() if self.cell_gate else None,
        }


def onnx_session_options(threads: int | None = None) -> Any:
    """Session options measured best on a small CPU: full graph optimisation, and as many
    intra-op threads as cores (ORT's default) unless `threads` says otherwise, sequential
    execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = _threads(threads)
    so.log_severity_level = 3
    return so


def _threads(threads: int | None) -> int:
    return max(1, threads if threads is not None else (os.cpu_count() or 1))


class OnnxBackend(Backend):
    """An exported `.onnx` file run by ONNX Runtime on the CPU; metadata from `metadata_props`.

    `threads` is the intra-op threads of one run. With fewer than the cores, the backend asks
    for several batches at once (`concurrent_batches`, one ONNX Runtime run per thread: the
    session is safe to share): a whole-folder predict opens it with one thread, because one
    single-thread run per core keeps up better than one run over every core while decoding
    shares those cores (ONNX Runtime's pool waits for its slowest thread).
    """

    engine = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.concurrent_batches = max(1, (os.cpu_count() or 1) // _threads(threads))
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX model not found: {self.path}")
        try:
            self.session = ort.InferenceSession(
                str(self.path), onnx_session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("bloodcell.format") != json.dumps(ONNX_FORMAT):
            raise ModelError(
                f"{self.path}: not a bloodcell ONNX export (no bloodcell metadata); "
                "create one with `bloodcell export MODEL --format onnx`"
            )
        cfg = {k: json.loads(v) for k, v in meta.items() if k in META_KEYS}
        self.config = cfg
        self.architecture = cfg.get("architecture", "?")
        self.labels = list(cfg["labels"])
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = Preprocess.from_dict(cfg["preprocess"])
        self.temperature = float(cfg.get("temperature", 1.0))
        self.uncertain_threshold = float(
            cfg.get("uncertain_threshold", DEFAULT_UNCERTAIN_THRESHOLD)
        )
        self.quantization: Quantization | None = cfg.get("quantization")
        if (self.quantization or {}).get("dtype") == "int8":
            self.engine = "onnx-int8"
        outputs = {o.name for o in self.session.get_outputs()}
        self.scope_info = cfg.get("ood") if ONNX_OOD_SCORE in outputs else None
        self.ood_threshold = float(self.scope_info["threshold"]) if self.scope_info else None
        self.conformal = ConformalSets.from_config(cfg.get("conformal"))
        self.cell_gate = CellGate.from_config(cfg.get("cell_gate"))

    def run(self, batch: ArrayLike) -> Outputs:
        x = as_array(batch)
        if self.scope_info is None:
            return Outputs(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0])
        logits, scores = self.session.run([ONNX_OUTPUT, ONNX_OOD_SCORE], {ONNX_INPUT: x})
        return Outputs(logits, scores.astype(np.float64))

    def use_calibration(
        self,
        config: Mapping[str, Any],
        ood: ScopeDetectorRecord | None,
        check: EngineCheck | None = None,
    ) -> None:
        """Take temperature, thresholds and prediction sets from the model directory's
        `config` (its out-of-scope detector `ood`, None without one): they are refitted
        (`bloodcell calibrate`) after an export, and the directory is the truth.

        `check` is the export's record for this file; int8 shifts the out-of-scope scores a
        little, so when the record holds a threshold refitted on this file's own validation
        scores at the directory's acceptance, that one is kept.
        """
        self.config = config
        self.temperature = float(config.get("temperature", 1.0))
        self.uncertain_threshold = float(
            config.get("uncertain_threshold", DEFAULT_UNCERTAIN_THRESHOLD)
        )
        self.conformal = ConformalSets.from_config(config.get("conformal"))
        self.cell_gate = CellGate.from_config(config.get("cell_gate"))
        if self.scope_info is not None and ood is not None:
            info: ScopeDetectorRecord = {**self.scope_info, **ood}
            self.ood_threshold = float(ood["threshold"])
            own = (check or {}).get("ood")
            if own and own["acceptance"] == ood["acceptance"]:
                self.ood_threshold = float(own["threshold"])
                info["threshold"] = self.ood_threshold
            self.scope_info = info

    def describe(self) -> ModelSummary:
        return {**super().describe(), "quantization": self.quantization}
