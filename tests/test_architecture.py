"""docs/architecture.py: the layer contract covers every part of the package, the import graph
respects it (no layer imports one above it), and the picture is drawn. Besides: no module
imports one that imports it back (however indirectly), and no module hides where a name lives
behind a module-level `__getattr__`."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import sys
from pathlib import Path

import grimp
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


def test_no_import_cycles() -> None:
    # Every import counts, also those inside functions and those for type checking only: a
    # circle, however it is spelt, means two modules cannot be understood one at a time.
    graph = grimp.build_graph("bloodcell", exclude_type_checking_imports=False, cache_dir=None)
    cycles = sorted(
        " -> ".join(graph.find_shortest_chain(importer=imported, imported=importer) or ())
        + f" -> {imported}"
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == []
    assert len(graph.modules) > 50  # the graph was read


def test_no_module_level_getattr() -> None:
    # A module-level __getattr__ (PEP 562) gives a name a second import path or hides a lazy
    # import: each name is imported from the module that defines it.
    src = Path(bloodcell.__file__).parent
    found = [
        str(path.relative_to(src.parent))
        for path in sorted(src.rglob("*.py"))
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
    ]
    assert found == []
