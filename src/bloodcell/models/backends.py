"""One inference interface over two engines: torch eager (a saved model) and ONNX Runtime.

`open_backend(path)` takes a run directory, a model directory or an exported `.onnx` file and
returns a `Backend` that knows its class names, preprocessing, calibration temperature and
`uncertain` threshold. Prediction, evaluation and the server call only this interface, so an
`.onnx` file is a drop-in replacement for the torch model.

The ONNX file carries what the model directory's `config.json` carries, as `metadata_props`
(keys in `META_KEYS`, values JSON-encoded), so the file alone is enough to predict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bloodcell.data.dataset import Preprocess
from bloodcell.errors import ModelError
from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.saved import DEFAULT_UNCERTAIN_THRESHOLD, LoadedModel, load_model

#: Names of the ONNX graph's input and output.
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
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
)
ONNX_FORMAT = "bloodcell-onnx/1"

ArrayLike = np.ndarray | torch.Tensor


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis of `logits / temperature`."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class Backend:
    """What every engine offers: metadata plus logits and calibrated probabilities."""

    kind: str = "?"
    path: Path
    architecture: str
    labels: list[str]
    display_names: dict[str, str]
    preprocess: Preprocess
    temperature: float
    uncertain_threshold: float

    def predict_logits(self, batch: ArrayLike) -> np.ndarray:
        """Raw logits (N, C) for a preprocessed float batch (N, 3, S, S)."""
        raise NotImplementedError

    def predict_proba(self, batch: ArrayLike, calibrated: bool = True) -> np.ndarray:
        """Class probabilities (N, C); temperature-scaled unless `calibrated=False`."""
        return softmax(self.predict_logits(batch), self.temperature if calibrated else 1.0)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for reports, `predict --format json` and the server."""
        return {
            "path": str(self.path),
            "backend": self.kind,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "uncertain_threshold": self.uncertain_threshold,
            "image_size": self.preprocess.image_size,
        }


class TorchBackend(Backend):
    """A saved model run by torch eager on the CPU (also what Grad-CAM needs)."""

    kind = "torch"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.path = loaded.path
        cfg = loaded.config
        self.architecture = loaded.architecture
        self.labels = loaded.labels
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = loaded.preprocess
        self.temperature = loaded.temperature
        self.uncertain_threshold = loaded.uncertain_threshold

    @torch.inference_mode()
    def predict_logits(self, batch: ArrayLike) -> np.ndarray:
        x = torch.as_tensor(batch, dtype=torch.float32)
        return self.model(x).float().numpy()


def onnx_session_options(threads: int | None = None) -> Any:
    """Session options measured best on a small CPU: full graph optimisation, and as many
    intra-op threads as cores (ORT's default), sequential execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads if threads is not None else (os.cpu_count() or 1)
    so.log_severity_level = 3
    return so


class OnnxBackend(Backend):
    """An exported `.onnx` file run by ONNX Runtime on the CPU; metadata from `metadata_props`."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

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
        self.metadata = cfg
        self.architecture = cfg.get("architecture", "?")
        self.labels = list(cfg["labels"])
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = Preprocess.from_dict(cfg["preprocess"])
        self.temperature = float(cfg.get("temperature", 1.0))
        self.uncertain_threshold = float(
            cfg.get("uncertain_threshold", DEFAULT_UNCERTAIN_THRESHOLD)
        )
        self.quantization = cfg.get("quantization")

    def predict_logits(self, batch: ArrayLike) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantization": self.quantization}


def open_backend(path: str | Path, threads: int | None = None) -> Backend:
    """Open a run directory, model directory or `.onnx` file for inference."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path, threads=threads)
    return TorchBackend(load_model(path))


def dataset_logits(
    backend: Backend, dataset: Dataset, batch_size: int = 64, num_workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and integer targets (N,) over a `(tensor, target)` dataset, in order.

    Shared by calibration and evaluation so both see exactly the same numbers.
    """
    logits, targets = [], []
    for x, y in _batches(dataset, batch_size, num_workers):
        logits.append(backend.predict_logits(x))
        targets.append(np.asarray(y))
    if not logits:
        return np.zeros((0, len(backend.labels)), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(logits), np.concatenate(targets).astype(np.int64)


def _batches(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[tuple]:
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
