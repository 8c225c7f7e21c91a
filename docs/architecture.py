"""Draw docs/architecture.png from the code: the layers of `bloodcell`, what each one is for, and
which layer imports which.

Usage::

    .venv/bin/python docs/architecture.py [--out docs/architecture.png]

The import graph comes from grimp (the library behind import-linter, which checks the same
layers in `make lint`); every import counts, also those inside functions, except imports made
only for type checking. The layers are the contract in pyproject.toml
(`[tool.importlinter]`), read from there, so the picture cannot drift from what is checked.
Left: the layers, top (the command line) to bottom (the names everything shares), each with the
first line of its package docstring. Right: how many imports go from each layer (row) to each
other (column); a layer may import only those below it, so every figure sits right of the
diagonal and the left of it stays empty (a figure there is drawn in red, and the script exits
with 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tomllib
from pathlib import Path

import grimp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def contract_layers(pyproject: Path = ROOT / "pyproject.toml") -> list[list[str]]:
    """The layers of the import-linter contract, top first; each a list of sibling modules."""
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in layer.split("|")] for layer in contract["layers"]]


def import_counts(layers: list[list[str]]) -> np.ndarray:
    """counts[i, j]: imports from modules of layer i to modules of layer j (i != j)."""
    graph = grimp.build_graph("bloodcell", exclude_type_checking_imports=True)
    where = {}
    for i, layer in enumerate(layers):
        for package in layer:
            for module in graph.find_descendants(package) | {package}:
                where[module] = i
    counts = np.zeros((len(layers), len(layers)), int)
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            i, j = where.get(importer), where.get(imported)
            if i is not None and j is not None and i != j:
                counts[i, j] += 1
    return counts


def summary(module: str) -> str:
    """First line of a module's docstring, for the label of its layer."""
    doc = importlib.import_module(module).__doc__ or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    return line if len(line) <= 100 else line[:97].rstrip() + "..."


def draw(layers: list[list[str]], counts: np.ndarray, out: Path) -> Path:
    """The two panels described in the module docstring, as a PNG."""
    names = [" | ".join(m.removeprefix("bloodcell.") for m in layer) for layer in layers]
    n = len(layers)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(19, 0.55 * n + 1.6), gridspec_kw={"width_ratios": [1.5, 1]}
    )
    left.set_xlim(0, 1)
    left.set_ylim(n, 0)
    left.axis("off")
    left.set_title("Layers, top to bottom: each imports only those below it", loc="left")
    for i, (name, layer) in enumerate(zip(names, layers, strict=True)):
        left.add_patch(
            plt.Rectangle((0.0, i + 0.08), 0.99, 0.84, facecolor="#e8f0fb", edgecolor="#4a6fa5")
        )
        left.text(0.02, i + 0.5, name, va="center", fontsize=10, fontweight="bold")
        left.text(0.22, i + 0.5, summary(layer[0]), va="center", fontsize=8.5)
    shown = np.where(counts > 0, counts, np.nan)
    right.imshow(shown, cmap="Blues", vmin=0, vmax=max(1, int(counts.max())))
    right.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    right.set_yticks(range(n), names, fontsize=8)
    right.set_xlabel("imported layer")
    right.set_ylabel("importing layer")
    right.set_title("Imports between layers (left of the diagonal: not allowed)", loc="left")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "red" if j < i else "black"  # an import of a layer above
                right.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour)
    right.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="grey", linewidth=0.8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    args = ap.parse_args(argv)
    layers = contract_layers()
    counts = import_counts(layers)
    print(draw(layers, counts, args.out))
    upward = int(np.tril(counts, -1).sum())
    print(f"{len(layers)} layers, {int(counts.sum())} imports between them, {upward} upward")
    return 1 if upward else 0


if __name__ == "__main__":
    sys.exit(main())
