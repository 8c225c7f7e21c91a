"""The saved-model directory: `model.safetensors` + `config.json` (+ `metrics.json`).

A saved model carries everything needed to predict exactly as it did after training: the
architecture name, class names, preprocessing, calibration temperature, and a record of how it
was made (training settings, the manifest's sha256, library versions).

Importing this module imports no torch: `read_model` reads what a model says about itself
(config.json, metrics.json), which is all an ONNX engine needs; `load_model` builds the torch
model and loads the weights (torch imported then).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bloodcell._version import __version__
from bloodcell.data.preprocess import Preprocess
from bloodcell.errors import ModelError
from bloodcell.labels import DISPLAY_NAMES, LABELS
from bloodcell.records import ModelConfig, ModelMetrics, ScopeDetectorRecord
from bloodcell.run_dir import (
    CONFIG_FILE,
    MODEL_DIR,
    SCOPE_DETECTOR_FILE,
    WEIGHTS_FILE,
    ModelDir,
    atomic,
    read_json,
    write_json,
)

if TYPE_CHECKING:
    import torch

    from bloodcell.models.registry import Classifier

FORMAT = "bloodcell-model/1"
#: Below this top-class probability a prediction is flagged `uncertain` (after calibration).
DEFAULT_UNCERTAIN_THRESHOLD = 0.8


def library_versions() -> dict[str, str]:
    import torch
    import torchvision

    return {
        "bloodcell": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


class ConfigView:
    """What a saved model's `config.json` says, as properties: shared by the record read
    without torch (`SavedModel`) and the loaded model (`LoadedModel`)."""

    config: ModelConfig

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.config["preprocess"])

    @property
    def temperature(self) -> float:
        return float(self.config.get("temperature", 1.0))

    @property
    def uncertain_threshold(self) -> float:
        return float(self.config.get("uncertain_threshold", DEFAULT_UNCERTAIN_THRESHOLD))


@dataclass(frozen=True)
class SavedModel(ConfigView):
    """What a model directory says about itself, read without torch: its `config.json` and
    `metrics.json` (empty when absent)."""

    path: Path
    config: ModelConfig
    metrics: ModelMetrics = field(default_factory=lambda: ModelMetrics())


def read_config(model_dir: str | Path) -> ModelConfig:
    """A model directory's `config.json`: the one place it is parsed, so every reader gets the
    same record (and the same error for a file that is not a bloodcell model's)."""
    config: ModelConfig = read_json(ModelDir(Path(model_dir)).config)
    if config.get("format") != FORMAT:
        raise ModelError(f"{model_dir}: unsupported model format {config.get('format')!r}")
    return config


def read_metrics(model_dir: str | Path) -> ModelMetrics:
    """A model directory's `metrics.json`; empty when nothing was measured yet."""
    path = ModelDir(Path(model_dir)).metrics
    return read_json(path) if path.is_file() else {}


def saved_scope_detector(model_dir: Path, config: ModelConfig) -> ScopeDetectorRecord | None:
    """The out-of-scope detector's record (`ScopeDetector.to_config`) when the model has one:
    `config.json` names it and its statistics file is there (the file is not read, so no torch).
    The one rule for every engine; `ScopeDetector.load` checks the method when it reads the file."""
    ood = config.get("ood")
    if not ood or not (Path(model_dir) / SCOPE_DETECTOR_FILE).is_file():
        return None
    return ood


def read_model(path: str | Path) -> SavedModel:
    """The config and metrics of a run or model directory (no weights are read)."""
    model_dir = resolve_model_dir(path)
    return SavedModel(model_dir, read_config(model_dir), read_metrics(model_dir))


@dataclass
class LoadedModel(ConfigView):
    """A model ready for inference, with its recorded configuration."""

    model: Classifier
    config: ModelConfig
    path: Path
    metrics: ModelMetrics = field(default_factory=lambda: ModelMetrics())

    def predict_proba(self, batch: torch.Tensor, calibrated: bool = True) -> torch.Tensor:
        """Class probabilities (N, 4) for a preprocessed batch, temperature-scaled by default."""
        import torch

        with torch.inference_mode():
            logits = self.model(batch)
            if calibrated:
                logits = logits / self.temperature
            return logits.softmax(dim=1)


def save_model(
    model: Classifier,
    out_dir: str | Path,
    architecture: str,
    preprocess: Preprocess,
    training: Mapping[str, object] | None = None,
    data: Mapping[str, str] | None = None,
    temperature: float = 1.0,
    metrics: ModelMetrics | None = None,
) -> Path:
    """Write the model directory; returns its path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    files = ModelDir(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic(files.weights) as tmp:  # whole or absent, and readable by the group
        save_file(state, tmp, metadata={"format": FORMAT, "architecture": architecture})
    config = {
        "format": FORMAT,
        "architecture": architecture,
        "labels": list(LABELS),
        "display_names": dict(DISPLAY_NAMES),
        "preprocess": preprocess.to_dict(),
        "temperature": float(temperature),
        "uncertain_threshold": DEFAULT_UNCERTAIN_THRESHOLD,
        "training": dict(training or {}),
        "data": data or {},
        "versions": library_versions(),
    }
    write_json(files.config, config)
    if metrics is not None:
        write_json(files.metrics, metrics)
    return out


def update_config(model_dir: str | Path, **changes: Any) -> None:
    """Change fields of a saved model's config (e.g. the fitted temperature)."""
    model_dir = resolve_model_dir(model_dir)
    write_json(ModelDir(model_dir).config, {**read_config(model_dir), **changes})


def update_metrics(model_dir: str | Path, **changes: Any) -> None:
    """Set top-level entries of a saved model's metrics.json (a split's figures, the engine
    checks), keeping the others; the file is created when missing."""
    model_dir = resolve_model_dir(model_dir)
    write_json(ModelDir(model_dir).metrics, {**read_metrics(model_dir), **changes})


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model directory or a run directory (which holds `model/`)."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        files = ModelDir(candidate)
        if files.config.is_file() and files.weights.is_file():
            return candidate
    raise ModelError(
        f"{path}: not a bloodcell model or run directory (expected {CONFIG_FILE} and "
        f"{WEIGHTS_FILE} in it or in its model/ folder); train one with `bloodcell train`"
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a saved model in eval mode. The architecture is rebuilt without downloading weights."""
    from safetensors.torch import load_file

    from bloodcell.models.registry import create_model

    saved = read_model(path)
    model_dir, config = saved.path, saved.config
    model = create_model(config["architecture"], pretrained=False)
    try:
        model.load_state_dict(load_file(ModelDir(model_dir).weights, device=str(device)))
    except RuntimeError as exc:
        raise ModelError(
            f"{ModelDir(model_dir).weights}: weights do not fit {config['architecture']}: {exc}"
        ) from exc
    model.to(device).eval()
    return LoadedModel(model=model, config=config, path=model_dir, metrics=saved.metrics)
