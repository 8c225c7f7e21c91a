"""The served model: loaded once with the chosen engine, torch beside it for Grad-CAM, and the
facts `/v1/model` reports about it."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bloodcell.data.manifest import file_sha256
from bloodcell.evaluation.explain import explain_image
from bloodcell.models.backends import Backend, TorchBackend
from bloodcell.models.engines import open_with_torch
from bloodcell.models.saved import METRICS_FILE, WEIGHTS_FILE
from bloodcell.predict import Prediction as ImagePrediction
from bloodcell.predict import predict_images
from bloodcell.reporting.model_card import CARD_FILE
from bloodcell.run_dir import RunDir

log = logging.getLogger("bloodcell.serve")

#: Heatmaps are sent at most this many pixels on their longer side, to keep responses small.
HEATMAP_MAX_SIDE = 1024


@dataclass(frozen=True)
class Upload:
    """One decoded upload on its way to the batch worker: its name, the image, and whether an
    image with no white cell found is refused (the request's `cell_guard`)."""

    name: str
    image: Image.Image
    cell_guard: bool = True


@dataclass
class Engine:
    """The model, loaded once: the fastest backend for probabilities, torch for Grad-CAM."""

    backend: Backend
    torch: TorchBackend | None
    info: dict[str, Any]
    #: `model/README.md`; read per request, so a re-evaluation while serving shows at once.
    card: Path | None = None

    @property
    def can_explain(self) -> bool:
        return self.torch is not None

    def classify(self, uploads: Sequence[Upload]) -> list[ImagePrediction]:
        """Blocking: one model call per guard setting for decoded uploads (the batch worker's
        job); answers in upload order."""
        answers: dict[int, ImagePrediction] = {}
        for guard in (True, False):
            picked = [i for i, u in enumerate(uploads) if u.cell_guard is guard]
            if picked:
                images = [uploads[i].image for i in picked]
                names = [uploads[i].name for i in picked]
                preds = predict_images(self.backend, images, names, cell_guard=guard)
                answers.update(zip(picked, preds, strict=True))
        return [answers[i] for i in range(len(uploads))]

    def heatmap(self, image: Image.Image, target: str) -> str:
        """Grad-CAM of the class the serving backend predicted, as a base64 PNG no larger
        than HEATMAP_MAX_SIDE (the model sees a few hundred pixels; more would only be bytes).
        Blocking; the caller holds the batcher's model lock."""
        assert self.torch is not None
        overlay = explain_image(self.torch, _shrink(image, HEATMAP_MAX_SIDE), target=target)
        return base64.b64encode(overlay.overlay_png()).decode("ascii")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    copy = image.copy()
    copy.thumbnail((max_side, max_side))
    return copy


def open_engine(model_path: str | Path, engine: str = "auto") -> Engine:
    """Load the model once with the chosen engine (`models.engines.open_model`: auto takes the
    fastest checked one), and torch beside it for Grad-CAM."""
    path = Path(model_path)
    backend, torch_backend = open_with_torch(path, engine)
    if torch_backend is None:  # a lone .onnx file
        info = _model_info(backend, None, path, path.parent)
        return Engine(backend, None, info, path.parent / CARD_FILE)
    model_dir = torch_backend.path
    info = _model_info(backend, torch_backend, model_dir / WEIGHTS_FILE, model_dir)
    log.info("engine: %s (%s)", backend.kind, backend.path)
    return Engine(backend, torch_backend, info, model_dir / CARD_FILE)


def _model_info(
    backend: Backend, torch_backend: TorchBackend | None, weights: Path, model_dir: Path
) -> dict[str, Any]:
    config = backend.config  # the model directory's, or a lone .onnx file's metadata
    metrics = torch_backend.loaded.metrics if torch_backend else _read_metrics(model_dir)
    name = RunDir.of_model(model_dir).path.name
    if weights.suffix == ".onnx":
        name = weights.stem
    return {
        "name": str(config.get("name") or name),
        "architecture": backend.architecture,
        "version": file_sha256(weights)[:12],
        "format": str(config.get("format") or config.get("bloodcell.format") or "?"),
        "bloodcell_version": (config.get("versions") or {}).get("bloodcell"),
        "backend": backend.kind,
        "classes": [
            {"label": lab, "display_name": backend.display_names.get(lab, lab)}
            for lab in backend.labels
        ],
        "image_size": backend.preprocess.image_size,
        "temperature": backend.temperature,
        "uncertain_threshold": backend.uncertain_threshold,
        "ood_threshold": backend.ood_threshold,
        "conformal_coverage": backend.conformal.coverage if backend.conformal else None,
        "explain_available": torch_backend is not None,
        "metrics": _finite(metrics),
    }


def _read_metrics(model_dir: Path) -> dict[str, Any]:
    import json

    path = model_dir / METRICS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("%s: unreadable, serving without metrics", path)
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
