"""bloodcell: B-ALL peripheral blood smear classification you can verify, explain and deploy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bloodcell._version import __version__
from bloodcell.labels import DISPLAY_NAMES, LABELS

__all__ = ["DISPLAY_NAMES", "LABELS", "__version__", "load"]

if TYPE_CHECKING:
    from pathlib import Path


def load(path: str | Path, engine: str = "auto") -> Any:
    """Open a run directory, model directory or `.onnx` file for prediction: the `Backend`
    every command uses (`models.engines.open_model`; `auto` = the fastest checked engine).

    Imported lazily so that `import bloodcell` stays fast and torch-free.
    """
    from bloodcell.models.engines import open_model

    return open_model(path, engine)
