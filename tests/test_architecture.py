"""docs/architecture.py: the layer contract covers every part of the package, the import graph
respects it (no layer imports one above it), and the picture is drawn."""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import bloodcell

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "architecture.py"


def _script():
    spec = importlib.util.spec_from_file_location("architecture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module  # dataclasses and friends look themselves up here
    spec.loader.exec_module(module)
    return module


def test_every_part_of_the_package_has_a_layer() -> None:
    layers = _script().contract_layers()
    named = {m for layer in layers for m in layer}
    parts = {f"bloodcell.{m.name}" for m in pkgutil.iter_modules(bloodcell.__path__)}
    assert named == parts  # a new package or module must take its place in the contract
    assert layers[0] == ["bloodcell.cli"]  # the command line is on top


def test_no_layer_imports_a_layer_above_it() -> None:
    arch = _script()
    counts = arch.import_counts(arch.contract_layers())
    layers = [" | ".join(layer) for layer in arch.contract_layers()]
    rows, cols = np.nonzero(np.tril(counts, -1))
    upward = [f"{layers[i]} -> {layers[j]}" for i, j in zip(rows, cols, strict=True)]
    assert upward == []
    assert counts.sum() > 100  # the graph was read: the layers do import each other


def test_the_picture_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "architecture.png"
    assert _script().main(["--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 1000
