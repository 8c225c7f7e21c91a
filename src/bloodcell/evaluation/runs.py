"""One way to open a run for an evaluation step: `open_run(path)` gives the model's backend, its
config, its run folder and the data it was trained on; `Run.split(name)` gives one split's rows.

Every step that measures a trained model (evaluate, calibrate, robustness, scope, the audit, and
the export's calibration data and engine check) starts here, so the rule that finds the data
(`RunDir.find_data`) and the error for an empty split are written once.

A directory opens on torch unless told otherwise: the reference the ONNX engines are checked
against. An `.onnx` file opens as it is, with the config of the model directory it sits in when
there is one (that config names the data folder and manifest; a lone file has none). The
backend is opened on first use, so a step that needs only the data loads no weights.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bloodcell.data.manifest import ManifestRow, read_manifest, select
from bloodcell.errors import DatasetError, ModelError
from bloodcell.models.engines import open_model
from bloodcell.models.saved import read_config, resolve_model_dir
from bloodcell.records import ModelConfig
from bloodcell.run_dir import ModelDir, RunData, RunDir

if TYPE_CHECKING:
    from PIL import Image

    from bloodcell.models.backends import Backend
    from bloodcell.models.saved import LoadedModel


@dataclass(frozen=True)
class Split:
    """One split of a run's data: its manifest rows and where their images are."""

    name: str
    rows: list[ManifestRow]
    data: RunData

    @property
    def root(self) -> Path:
        return self.data.root

    def y_true(self, labels: list[str]) -> np.ndarray:
        """The rows' true classes as indices into `labels`."""
        return np.array([labels.index(r.label) for r in self.rows])


@dataclass(frozen=True)
class SplitImages:
    """One split, decoded: what the image studies (robustness, the audit) ask the model about."""

    split: Split
    y_true: np.ndarray
    images: list[Image.Image]


@dataclass
class Run:
    """A trained model opened for measuring, with its run folder and data."""

    #: What was opened: a run or model directory, or an `.onnx` file.
    path: Path
    config: ModelConfig
    folder: RunDir
    #: The engine the backend opens with (`models.engines.ENGINES`).
    engine: str
    #: The data folder and manifest given on the command line (None: the recorded ones).
    data_root: Path | None = None
    manifest: Path | None = None

    @cached_property
    def backend(self) -> Backend:
        return open_model(self.path, self.engine)

    @property
    def loaded(self) -> LoadedModel:
        """The torch model of a run opened on the torch engine: what evaluation measures."""
        from bloodcell.models.torch_backend import TorchBackend

        backend = self.backend
        if not isinstance(backend, TorchBackend):
            raise ModelError(f"{self.path}: opened on the {backend.engine} engine, not torch")
        return backend.loaded

    @cached_property
    def data(self) -> RunData:
        return self.folder.find_data(self.config.get("data"), self.data_root, self.manifest)

    def split(self, name: str) -> Split:
        """The rows of split `name`; a DatasetError naming the manifest when it has none."""
        rows = select(read_manifest(self.data.manifest), name)
        if not rows:
            raise DatasetError(f"{self.data.manifest}: the {name} split is empty")
        return Split(name, rows, self.data)

    def images(self, name: str, progress: bool = True) -> SplitImages:
        """Split `name` decoded, with its true classes in the backend's label order."""
        from tqdm import tqdm

        from bloodcell.data.decode import decode_image

        split = self.split(name)
        rows = tqdm(split.rows, desc="decode", unit="img", file=sys.stderr, disable=not progress)
        images = [decode_image(split.root / r.path) for r in rows]
        return SplitImages(split, split.y_true(list(self.backend.labels)), images)


def open_run(
    path: str | Path,
    engine: str | None = None,
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
) -> Run:
    """Open a run directory, model directory or `.onnx` file for measuring (`engine` defaults
    to torch for a directory and to the file itself for `.onnx`); `data_root` and `manifest`
    override what the model recorded."""
    path = Path(path)
    given = (Path(data_root) if data_root else None, Path(manifest) if manifest else None)
    if path.suffix.lower() == ".onnx":
        beside = ModelDir(path.parent)
        config = read_config(beside.path) if beside.config.is_file() else ModelConfig()
        return Run(path, config, RunDir.of_model(path.parent), engine or "auto", *given)
    model_dir = resolve_model_dir(path)
    return Run(path, read_config(model_dir), RunDir.of_model(model_dir), engine or "torch", *given)
