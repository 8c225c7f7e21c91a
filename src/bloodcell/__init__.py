"""bloodcell: B-ALL peripheral blood smear classification you can verify, explain and deploy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bloodcell.labels import DISPLAY_NAMES, LABELS

__version__ = "0.1.0"
__all__ = ["DISPLAY_NAMES", "LABELS", "__version__", "load"]

if TYPE_CHECKING:
    from pathlib import Path


def load(path: str | Path) -> Any:
    """Load a saved model directory (or run directory) for prediction.

    Imported lazily so that `import bloodcell` stays fast and torch-free.
    """
    from bloodcell.models.saved import load_model

    return load_model(path)
