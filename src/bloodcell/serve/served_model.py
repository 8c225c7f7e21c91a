"""The served model: loaded once with the chosen engine, torch beside it for Grad-CAM (loaded on
the first heatmap asked for, so an ONNX engine starts without torch), and the facts `/v1/model`
reports about it."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from PIL import Image

from bloodcell.data.manifest import file_sha256
from bloodcell.models.backends import Backend
from bloodcell.models.engines import open_model, open_torch
from bloodcell.models.saved import read_metrics, read_model
from bloodcell.predict.records import Prediction as ImagePrediction
from bloodcell.predict.stream import Prepared, predict_prepared, prepare_image
from bloodcell.records import ModelMetrics
from bloodcell.run_dir import ModelDir, RunDir

if TYPE_CHECKING:
    from bloodcell.models.torch_backend import TorchBackend

log = logging.getLogger("bloodcell.serve")

#: Heatmaps are sent at most this many pixels on their longer side, to keep responses small.
HEATMAP_MAX_SIDE = 1024


@dataclass(frozen=True)
class Upload:
    """One decoded upload on its way to the batch worker: its name, the image (for a heatmap)
    and the model's input made from it in the request's own thread (`prepared`, with the cells
    when the request's `cell_guard` applies)."""

    name: str
    image: Image.Image
    prepared: Prepared


class ClassName(TypedDict):
    label: str
    display_name: str


class ModelFacts(TypedDict):
    """What `/v1/model` says about the model (`ModelInfo`, less what the routes add)."""

    name: str
    architecture: str
    version: str
    format: str
    bloodcell_version: str | None
    engine: str
    #: Deprecated: the same as `engine`, under its first name.
    backend: str
    classes: list[ClassName]
    image_size: int
    temperature: float
    uncertain_threshold: float
    ood_threshold: float | None
    conformal_coverage: float | None
    explain_available: bool
    #: metrics.json with every NaN or infinity as None (JSON has neither).
    metrics: ModelMetrics


@dataclass
class ServedModel:
    """The model, loaded once: a backend on the chosen engine for probabilities, torch for
    Grad-CAM."""

    backend: Backend
    #: The model directory Grad-CAM loads torch from; None for a lone .onnx file.
    model_dir: Path | None
    info: ModelFacts
    #: `model/README.md`; read per request, so a re-evaluation while serving shows at once.
    card: Path | None = None
    _torch: TorchBackend | None = None

    @property
    def can_explain(self) -> bool:
        return self.model_dir is not None

    @property
    def torch(self) -> TorchBackend | None:
        """The torch model for Grad-CAM: the serving backend when it is torch, else loaded on
        first use (the caller holds the batcher's model lock, so it is loaded once)."""
        if self._torch is None and self.model_dir is not None:
            if self.backend.engine == "torch":
                self._torch = self.backend  # type: ignore[assignment]
            else:
                self._torch = open_torch(self.model_dir)
        return self._torch

    def prepare(self, name: str, image: Image.Image, cell_guard: bool = True) -> Upload:
        """Blocking: the model's input for one upload (the finder, the scale and the view), made
        in the request's thread so that the requests' preprocessing runs on every core while
        the batch worker runs the model."""
        return Upload(name, image, prepare_image(self.backend, image, cell_guard))

    def classify(self, uploads: Sequence[Upload]) -> list[ImagePrediction]:
        """Blocking: one model call for prepared uploads (the batch worker's job); answers in
        upload order."""
        names = [u.name for u in uploads]
        return predict_prepared(self.backend, [u.prepared for u in uploads], names)

    def heatmap(self, image: Image.Image, target: str) -> str:
        """Grad-CAM of the class the serving backend predicted, as a base64 PNG no larger
        than HEATMAP_MAX_SIDE (the model sees a few hundred pixels; more would only be bytes).
        Blocking; the caller holds the batcher's model lock."""
        from bloodcell.evaluation.gradcam import explain_image

        assert self.torch is not None
        overlay = explain_image(self.torch, _shrink(image, HEATMAP_MAX_SIDE), target=target)
        return base64.b64encode(overlay.overlay_png()).decode("ascii")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    copy = image.copy()
    copy.thumbnail((max_side, max_side))
    return copy


def open_served_model(model_path: str | Path, engine: str = "auto") -> ServedModel:
    """Load the model once with the chosen engine (`models.engines.open_model`: auto takes the
    fastest checked one); torch for Grad-CAM is loaded when the first heatmap is asked for."""
    path = Path(model_path)
    backend = open_model(path, engine)
    if path.suffix.lower() == ".onnx":  # a lone .onnx file
        info = _model_info(backend, None, path, path.parent)
        return ServedModel(backend, None, info, ModelDir(path.parent).card)
    saved = read_model(path)
    files = ModelDir(saved.path)
    info = _model_info(backend, saved.metrics, files.weights, saved.path)
    log.info("engine: %s (%s)", backend.engine, backend.path)
    return ServedModel(backend, saved.path, info, files.card)


def _model_info(
    backend: Backend, metrics: ModelMetrics | None, weights: Path, model_dir: Path
) -> ModelFacts:
    """What /v1/model says; `metrics` is the model directory's (None: read beside the file)."""
    config = backend.config  # the model directory's, or a lone .onnx file's metadata
    explain = metrics is not None
    metrics = metrics if metrics is not None else _read_metrics(model_dir)
    name = RunDir.of_model(model_dir).path.name
    if weights.suffix == ".onnx":
        name = weights.stem
    return {
        "name": str(config.get("name") or name),
        "architecture": backend.architecture,
        "version": file_sha256(weights)[:12],
        "format": str(config.get("format") or config.get("bloodcell.format") or "?"),
        "bloodcell_version": (config.get("versions") or {}).get("bloodcell"),
        "engine": backend.engine,
        "backend": backend.engine,  # deprecated: `engine`
        "classes": [
            {"label": lab, "display_name": backend.display_names.get(lab, lab)}
            for lab in backend.labels
        ],
        "image_size": backend.preprocess.image_size,
        "temperature": backend.temperature,
        "uncertain_threshold": backend.uncertain_threshold,
        "ood_threshold": backend.ood_threshold,
        "conformal_coverage": backend.conformal.coverage if backend.conformal else None,
        "explain_available": explain,
        "metrics": _finite(metrics),
    }


def _read_metrics(model_dir: Path) -> ModelMetrics:
    try:
        return read_metrics(model_dir)
    except (OSError, ValueError):
        log.warning("%s: unreadable, serving without metrics", ModelDir(model_dir).metrics)
        return {}


def _finite(obj: Any) -> Any:
    """JSON has no NaN or Infinity: undefined metrics become null instead of a 500."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
