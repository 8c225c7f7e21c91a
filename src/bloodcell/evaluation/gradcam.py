"""Why did the model say that? Grad-CAM heatmaps over the input image.

Uses `pytorch_grad_cam` (GradCAM + `show_cam_on_image`) on `Classifier.cam_layer`, the last
block of the backbone. The heatmap and overlay have the *input image's* size, so a server can
send the overlay back as a PNG next to the uploaded image.

Grad-CAM needs gradients, so it works on the torch model only: an exported `.onnx` file has
no gradients to read. Pass the run or model directory the `.onnx` was exported from.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bloodcell.errors import BloodcellError, ModelError
from bloodcell.models.backends import Backend
from bloodcell.models.engines import open_model
from bloodcell.models.torch_backend import TorchBackend

#: Grad-CAM hooks the shared model, so concurrent calls (a threaded server) take turns.
_CAM_LOCK = threading.Lock()


@dataclass
class Explanation:
    """A prediction with its Grad-CAM heatmap and overlay, both at the input image's size."""

    label: str
    display_name: str
    confidence: float
    uncertain: bool
    probabilities: dict[str, float]
    target: str
    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    overlay: Image.Image  # RGB, (W, H) like the input

    def overlay_png(self) -> bytes:
        """The overlay as PNG bytes (for a web response)."""
        buf = io.BytesIO()
        self.overlay.save(buf, format="PNG")
        return buf.getvalue()

    @property
    def title(self) -> str:
        flag = " - uncertain" if self.uncertain else ""
        return f"{self.display_name} ({self.confidence:.1%}){flag}"


def torch_backend(model: str | Path | Backend) -> TorchBackend:
    """The torch backend for `model`, or a ModelError saying why an .onnx file cannot do."""
    if isinstance(model, Backend):
        backend = model
    elif Path(model).suffix.lower() == ".onnx":
        raise ModelError(
            f"{model}: Grad-CAM needs the torch model's gradients, which an .onnx file does not "
            "have; pass the run or model directory it was exported from"
        )
    else:
        backend = open_model(model, "torch")
    if not isinstance(backend, TorchBackend):
        raise ModelError(
            f"{backend.path}: Grad-CAM works on torch models only, not {backend.engine}; "
            "pass the run or model directory"
        )
    return backend


def explain_image(
    model: str | Path | Backend,
    image: Image.Image,
    target: str | None = None,
    uncertain_threshold: float | None = None,
) -> Explanation:
    """Predict one PIL image and explain the predicted class (or `target`) with Grad-CAM."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    backend = torch_backend(model)
    rgb = image.convert("RGB")
    x = backend.preprocess.transform()(rgb).unsqueeze(0)
    probs = backend.predict_proba(x)[0]
    best = int(np.argmax(probs))
    if target is not None and target not in backend.labels:
        raise BloodcellError(f"unknown class {target!r}; one of {backend.labels}")
    t_index = best if target is None else backend.labels.index(target)
    net = backend.model
    with _CAM_LOCK, torch.enable_grad(), GradCAM(net, [net.cam_layer]) as cam:
        small = cam(x, targets=[ClassifierOutputTarget(t_index)])[0]
    heatmap = _resize_map(small, rgb.size)
    base = np.asarray(rgb, dtype=np.float32) / 255.0
    overlay = Image.fromarray(show_cam_on_image(base, heatmap, use_rgb=True))
    threshold = backend.uncertain_threshold if uncertain_threshold is None else uncertain_threshold
    label = backend.labels[best]
    return Explanation(
        label=label,
        display_name=backend.display_names.get(label, label),
        confidence=float(probs[best]),
        uncertain=bool(probs[best] < threshold),
        probabilities={lb: float(p) for lb, p in zip(backend.labels, probs, strict=True)},
        target=backend.labels[t_index],
        heatmap=heatmap,
        overlay=overlay,
    )


def _resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (S, S) map to the image's (W, H), clipped to [0, 1]."""
    resized = Image.fromarray(cam.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def render_figure(image: Image.Image, explanation: Explanation) -> Image.Image:
    """Input and overlay side by side, titled with the prediction and confidence."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.4), dpi=100)
    for ax, img, name in zip(
        fig.subplots(1, 2),
        (image.convert("RGB"), explanation.overlay),
        ("input", "Grad-CAM"),
        strict=True,
    ):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    what = "" if explanation.target == explanation.label else f"; map for {explanation.target}"
    fig.suptitle(explanation.title + what, fontsize=12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("RGB")
