"""One inference interface over two engines: torch eager (a saved model) and ONNX Runtime.

`models.engines.open_model(path, engine)` takes a run directory, a model directory or an
exported `.onnx` file and returns a `Backend` that knows its class names, preprocessing,
calibration temperature and `uncertain` threshold, and, when the model has them, its
out-of-scope detector and conformal prediction sets. Prediction, evaluation and the server call
only this interface, so an `.onnx` file is a drop-in replacement for the torch model.

The ONNX file carries what the model directory's `config.json` carries, as `metadata_props`
(keys in `META_KEYS`, values JSON-encoded), so the file alone is enough to predict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bloodcell.data.dataset import Preprocess
from bloodcell.errors import ModelError
from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.conformal import ConformalSets
from bloodcell.models.fusion import fused_classifier
from bloodcell.models.ood import OodDetector, input_spread
from bloodcell.models.saved import DEFAULT_UNCERTAIN_THRESHOLD, LoadedModel

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
)
ONNX_FORMAT = "bloodcell-onnx/1"

ArrayLike = np.ndarray | torch.Tensor


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
    """A batch's calibrated probabilities (N, C) and out-of-scope scores (N,) if any."""

    probs: np.ndarray
    ood_score: np.ndarray | None = None


def dihedral_views(batch: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 flips/90-degree rotations of an (N, C, H, W) batch, identity first."""
    for flipped in (batch, batch.flip(-1)):
        for k in range(4):
            yield torch.rot90(flipped, k, dims=(-2, -1)).contiguous()


class Backend:
    """What every engine offers: metadata, logits, calibrated probabilities, out-of-scope
    scores and prediction sets."""

    kind: str = "?"
    path: Path
    architecture: str
    labels: list[str]
    display_names: dict[str, str]
    preprocess: Preprocess
    temperature: float
    uncertain_threshold: float
    #: Above this score an image is out of scope; None when the model has no detector.
    ood_threshold: float | None = None
    ood_info: dict[str, Any] | None = None
    conformal: ConformalSets | None = None
    #: What the model records about itself: config.json, or an ONNX file's metadata.
    config: dict[str, Any]

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
        batch = torch.as_tensor(batch, dtype=torch.float32)
        views = list(dihedral_views(batch)) if tta else [batch]
        probs = np.zeros((batch.shape[0], len(self.labels)), dtype=np.float64)
        scores: np.ndarray | None = None
        for view in views:
            out = self.run(view)
            probs += softmax(out.logits, self.temperature)
            if out.ood_score is not None:
                scores = out.ood_score if scores is None else scores + out.ood_score
        n = len(views)
        return Scored((probs / n).astype(np.float32), None if scores is None else scores / n)

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
            "ood": self.ood_info,
            "conformal_coverage": self.conformal.coverage if self.conformal else None,
        }


class TorchBackend(Backend):
    """A saved model run by torch eager on the CPU (also what Grad-CAM needs)."""

    kind = "torch"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        # Channels-last (NHWC): the same sums, faster convolutions on a CPU (BENCHMARKS.md).
        self.model = loaded.model.to(memory_format=torch.channels_last)
        self._fast: torch.nn.Module | None = None
        self.path = loaded.path
        cfg = loaded.config
        self.config = cfg
        self.architecture = loaded.architecture
        self.labels = loaded.labels
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = loaded.preprocess
        self.temperature = loaded.temperature
        self.uncertain_threshold = loaded.uncertain_threshold
        self.ood = OodDetector.load(loaded.path, cfg.get("ood"))
        self.ood_threshold = self.ood.threshold if self.ood else None
        self.ood_info = self.ood.to_config() if self.ood else None
        self.conformal = ConformalSets.from_config(cfg.get("conformal"))

    @property
    def fast(self) -> torch.nn.Module:
        """What `run` uses: `model` with BatchNorm folded into the convolutions, faster again.
        Made on first use (an ONNX engine opened beside this one never needs it); `model`
        stays as trained for Grad-CAM, which needs its gradients."""
        if self._fast is None:
            self._fast = fused_classifier(self.model).to(memory_format=torch.channels_last)
        return self._fast

    @torch.inference_mode()
    def run(self, batch: ArrayLike) -> Outputs:
        x = torch.as_tensor(batch, dtype=torch.float32)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.ood is None:
            return Outputs(self.fast(x).float().numpy())
        logits, taps = self.fast.forward_with_taps(x, self.ood.layers)
        return Outputs(logits.float().numpy(), self.ood.score(taps, input_spread(x)))


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
        self.config = cfg
        self.architecture = cfg.get("architecture", "?")
        self.labels = list(cfg["labels"])
        self.display_names = dict(cfg.get("display_names") or DISPLAY_NAMES)
        self.preprocess = Preprocess.from_dict(cfg["preprocess"])
        self.temperature = float(cfg.get("temperature", 1.0))
        self.uncertain_threshold = float(
            cfg.get("uncertain_threshold", DEFAULT_UNCERTAIN_THRESHOLD)
        )
        self.quantization = cfg.get("quantization")
        if (self.quantization or {}).get("dtype") == "int8":
            self.kind = "onnx-int8"
        outputs = {o.name for o in self.session.get_outputs()}
        self.ood_info = cfg.get("ood") if ONNX_OOD_SCORE in outputs else None
        self.ood_threshold = float(self.ood_info["threshold"]) if self.ood_info else None
        self.conformal = ConformalSets.from_config(cfg.get("conformal"))

    def run(self, batch: ArrayLike) -> Outputs:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self.ood_info is None:
            return Outputs(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0])
        logits, scores = self.session.run([ONNX_OUTPUT, ONNX_OOD_SCORE], {ONNX_INPUT: x})
        return Outputs(logits, scores.astype(np.float64))

    def use_calibration_of(self, other: Backend, check: dict[str, Any] | None = None) -> None:
        """Take temperature, thresholds and prediction sets from the model directory: they are
        refitted (`bloodcell calibrate`) after an export, and the directory is the truth.

        `check` is the export's record for this file; int8 shifts the out-of-scope scores a
        little, so when the record holds a threshold refitted on this file's own validation
        scores at the directory's acceptance, that one is kept.
        """
        self.config = other.config
        self.temperature = other.temperature
        self.uncertain_threshold = other.uncertain_threshold
        self.conformal = other.conformal
        if self.ood_info is not None and other.ood_info is not None:
            self.ood_info = {**self.ood_info, **other.ood_info}
            self.ood_threshold = other.ood_threshold
            own = (check or {}).get("ood")
            if own and own.get("acceptance") == other.ood_info.get("acceptance"):
                self.ood_threshold = float(own["threshold"])
                self.ood_info["threshold"] = self.ood_threshold

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantization": self.quantization}


def dataset_logits(
    backend: Backend, dataset: Dataset, batch_size: int = 64, num_workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and integer targets (N,) over a `(tensor, target)` dataset, in order."""
    outputs, targets = dataset_outputs(backend, dataset, batch_size, num_workers)
    return outputs.logits, targets


def dataset_outputs(
    backend: Backend,
    dataset: Dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: str | None = None,
) -> tuple[Outputs, np.ndarray]:
    """Logits, out-of-scope scores and integer targets over a `(tensor, target)` dataset.

    Shared by calibration, evaluation and export so all see exactly the same numbers.
    `progress` names a progress bar (none when None).
    """
    from tqdm import tqdm

    logits, scores, targets = [], [], []
    batches = _batches(dataset, batch_size, num_workers)
    if progress:
        batches = tqdm(batches, desc=progress, unit="batch", total=-(-len(dataset) // batch_size))
    for x, y in batches:
        out = backend.run(x)
        logits.append(out.logits)
        scores.append(out.ood_score)
        targets.append(np.asarray(y))
    if not logits:
        empty = np.zeros((0, len(backend.labels)), np.float32)
        return Outputs(empty, None), np.zeros((0,), np.int64)
    has_scores = all(s is not None for s in scores)
    return (
        Outputs(np.concatenate(logits), np.concatenate(scores) if has_scores else None),
        np.concatenate(targets).astype(np.int64),
    )


@torch.inference_mode()
def dataset_taps(
    model: torch.nn.Module,
    dataset: Dataset,
    layers: list[int],
    batch_size: int = 64,
    progress: str | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """What the out-of-scope detector is fitted on, over a dataset in order: the tapped
    layers' pooled activations (one (N, D) array per layer) and each image's pixel spread."""
    from tqdm import tqdm

    model.eval().to(memory_format=torch.channels_last)  # the same sums, 1.7x faster on a CPU
    batches = _batches(dataset, batch_size, 0)
    if progress:
        batches = tqdm(batches, desc=progress, unit="batch", total=-(-len(dataset) // batch_size))
    taps: list[list[np.ndarray]] = [[] for _ in layers]
    spread = []
    for x, _ in batches:
        x = x.float()
        nhwc = x.contiguous(memory_format=torch.channels_last)
        for i, z in enumerate(model.forward_with_taps(nhwc, layers)[1]):
            taps[i].append(z.float().numpy())
        spread.append(input_spread(x).numpy())
    return [np.concatenate(t) for t in taps], np.concatenate(spread)


def _batches(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[tuple]:
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
