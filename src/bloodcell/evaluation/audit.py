"""The shortcut audit: does the answer come from the white cells or from the slide around them?

In the B-ALL dataset every class comes from its own patients and slide batches, so background,
red cells, stain and even the scale bar differ by class, and a model can score 99% by
recognising the slide. On the test split this asks the model about images that separate the
two (the white cells are those `data.cells` finds):

- **erased**: the white cells painted over with the image's own background colour. Nothing
  the label should come from is left; a model that still gives the true class reads the slide
  ("background reliance"). These should be refused.
- **alone**: the white cells on a flat neutral background.
- **swapped**: the cells of one image pasted on the cell-free background of an image of each
  other class (seeded). The label should follow the cells, not the background.
- **corner**: the bottom-right corner, where the scale bar is, painted with the background.

An image is *refused* when the white-cell finder sees no cell in it (the guard of `predict`)
or the out-of-scope detector scores it as unlike the training images. `audit_images` returns
the summary with the cases and answers it came from; `workflows.audit.audit_run` writes them to
`RUN/eval/<split>/audit.json`, `audit.png` (examples with answers and Grad-CAM), a section of
the split's `report.md`, and `audit` in the model's metrics.json.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from bloodcell.data.cells import (
    CellFinder,
    Cells,
    background_colour,
    erase_cells,
    keep_cells,
    paste_cells,
)
from bloodcell.models.backends import Backend
from bloodcell.models.refusal import refusals
from bloodcell.records import AuditVariant, SwapShares

#: The variants, in the order they are reported.
VARIANTS = ("original", "erased", "alone", "swapped", "corner")
#: The scale bar's corner (bottom right), as shares of the image's width and height.
CORNER = (0.22, 0.12)
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Answer:
    """What the model says about one audit image: the top class, and whether it was refused."""

    label: int
    refused: bool


@dataclass(frozen=True)
class Case:
    """One audit image: how it was made, its true class (for a swap, the cells' class) and, for
    a swap, the class of the background it was pasted on."""

    variant: str
    image: Image.Image
    true: int
    background: int | None = None
    source: int = 0


def erased(image: Image.Image, cells: Cells) -> Image.Image:
    """No white cell left: every cell pixel painted with the image's background colour."""
    return erase_cells(image, cells)


def alone(image: Image.Image, cells: Cells) -> Image.Image:
    """The white cells alone, everything else flat neutral grey."""
    return keep_cells(image, cells)


def swapped(
    cells_from: Image.Image, cells: Cells, onto: Image.Image, onto_cells: Cells
) -> Image.Image:
    """The cells of one image on the cell-free background of another."""
    return paste_cells(cells_from, cells, erase_cells(onto, onto_cells))


def corner_masked(image: Image.Image, cells: Cells) -> Image.Image:
    """The bottom-right corner (the scale bar) painted with the image's background colour."""
    out = image.convert("RGB").copy()
    w, h = out.size
    box = (int(w * (1 - CORNER[0])), int(h * (1 - CORNER[1])), w, h)
    out.paste(background_colour(image, cells), box)
    return out


def make_cases(
    images: Sequence[Image.Image], y_true: np.ndarray, finder: CellFinder, seed: int
) -> list[Case]:
    """Every audit image of a split: the four single-image variants of each image with at
    least one white cell found, and its cells on one random background of each other class."""
    found = [finder.find(im) for im in images]
    rng = np.random.default_rng(seed)
    by_class = {
        int(c): [i for i in np.flatnonzero(y_true == c) if found[i].count] for c in set(y_true)
    }
    cases = []
    for i, (im, cells) in enumerate(zip(images, found, strict=True)):
        t = int(y_true[i])
        cases.append(Case("original", im, t, source=i))
        if not cells.count:
            continue
        cases += [
            Case("erased", erased(im, cells), t, source=i),
            Case("alone", alone(im, cells), t, source=i),
            Case("corner", corner_masked(im, cells), t, source=i),
        ]
        for other, pool in sorted(by_class.items()):
            if other != t and pool:
                j = int(rng.choice(pool))
                image = swapped(im, cells, images[j], found[j])
                cases.append(Case("swapped", image, t, background=other, source=i))
    return cases


def answer(
    backend: Backend, images: Sequence[Image.Image], batch_size: int, tick: Callable[[int], Any]
) -> list[Answer]:
    """The model's top class for each image and whether it is refused (`models.refusal`: no
    white cell found, or out of scope), through the model's own preprocessing as `predict`
    runs it."""
    out: list[Answer] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        prepared = [backend.preprocess.prepare_array(im, guard=True) for im in chunk]
        scored = backend.score(np.stack([x for x, _ in prepared]))
        why = refusals(backend, scored.ood_score, [cells for _, cells in prepared])
        for j, refusal in enumerate(why):
            out.append(Answer(int(np.argmax(scored.probs[j])), refusal.refused))
        tick(len(chunk))
    return out


def summarise(cases: Sequence[Case], answers: Sequence[Answer], labels: Sequence[str]) -> dict:
    """Per variant: how many, share refused, share answered, accuracy of the top class over
    all of them ("background reliance" for erased) and over the answered; for swaps, among the
    answered, the share whose label follows the cells, the background or neither, per class."""
    result: dict[str, Any] = {}
    for variant in VARIANTS:
        picked = [(c, a) for c, a in zip(cases, answers, strict=True) if c.variant == variant]
        if picked:
            result[variant] = _variant(picked)
    swaps = [(c, a) for c, a in zip(cases, answers, strict=True) if c.variant == "swapped"]
    result["swapped_per_class"] = {
        lab: _follows([(c, a) for c, a in swaps if c.true == k]) for k, lab in enumerate(labels)
    }
    if swaps:
        result["swapped"] |= _follows(swaps)
    return result


def _variant(picked: Sequence[tuple[Case, Answer]]) -> AuditVariant:
    n = len(picked)
    right = [a.label == c.true for c, a in picked]
    answered = [(c, a) for c, a in picked if not a.refused]
    return {
        "n": n,
        "refused": round(sum(a.refused for _, a in picked) / n, 4),
        "answered": round(len(answered) / n, 4),
        "accuracy": round(sum(right) / n, 4),
        "answered_accuracy": (
            round(sum(a.label == c.true for c, a in answered) / len(answered), 4)
            if answered
            else None
        ),
    }


def _follows(swaps: Sequence[tuple[Case, Answer]]) -> SwapShares:
    answered = [(c, a) for c, a in swaps if not a.refused]
    n = len(answered)
    cells = sum(a.label == c.true for c, a in answered)
    background = sum(a.label == c.background for c, a in answered)
    return {
        "n": len(swaps),
        "n_answered": n,
        "follows_cells": round(cells / n, 4) if n else None,
        "follows_background": round(background / n, 4) if n else None,
        "follows_neither": round((n - cells - background) / n, 4) if n else None,
    }


def audit_images(
    backend: Backend,
    images: Sequence[Image.Image],
    y_true: np.ndarray,
    seed: int = DEFAULT_SEED,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[dict[str, Any], list[Case], list[Answer]]:
    """The audit over decoded images with their true classes: (summary, cases, answers)."""
    from tqdm import tqdm

    cases = make_cases(images, y_true, backend.preprocess.finder(), seed)
    with tqdm(
        total=len(cases), desc="audit", unit="img", file=sys.stderr, disable=not progress
    ) as bar:
        answers = answer(backend, [c.image for c in cases], batch_size, bar.update)
    return summarise(cases, answers, backend.labels), cases, answers


def targets(summary: dict[str, Any]) -> dict[str, bool | None]:
    """The audit's pass marks: >= 95% of cell-erased images refused; >= 80% of swaps answered,
    and among them the label follows the cells >= 90% and the background <= 5%."""
    erased_ = summary.get("erased")
    swaps = summary.get("swapped")
    follows = swaps.get("follows_cells") if swaps else None
    background = swaps.get("follows_background") if swaps else None
    return {
        "erased_refused": None if not erased_ else erased_["refused"] >= 0.95,
        "swaps_answered": None if not swaps else swaps["answered"] >= 0.80,
        "swaps_follow_cells": None if follows is None else follows >= 0.90,
        "swaps_follow_background": None if background is None else background <= 0.05,
    }


def pool(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Audit summaries of several folds as one: counts added, shares re-weighted by n."""
    pooled: dict[str, Any] = {}
    for variant in VARIANTS:
        parts = [r[variant] for r in results if variant in r]
        if not parts:
            continue
        n = sum(p["n"] for p in parts)
        row: dict[str, Any] = {"n": n}
        for key in ("refused", "answered", "accuracy"):
            row[key] = round(sum(p[key] * p["n"] for p in parts) / n, 4)
        n_ans = [p["answered"] * p["n"] for p in parts]
        acc = [(p["answered_accuracy"] or 0) * k for p, k in zip(parts, n_ans, strict=True)]
        row["answered_accuracy"] = round(sum(acc) / sum(n_ans), 4) if sum(n_ans) else None
        if variant == "swapped":
            k = sum(p["n_answered"] for p in parts)
            row["n_answered"] = k
            for key in ("follows_cells", "follows_background", "follows_neither"):
                num = sum((p[key] or 0) * p["n_answered"] for p in parts)
                row[key] = round(num / k, 4) if k else None
        pooled[variant] = row
    return pooled
