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

And the stain audit: with the slide hidden, does the answer come from the cells' shape or from
their colour (which differs by slide batch, and so by class, as well)?

- **recoloured**: the cells given the colour of another class's cells (a* and b* mean and
  spread matched inside the cells, `data.colour.recolour_cells`; lightness and texture kept),
  one random donor image of each other class. The label should follow the shape, not the
  colour donor.
- **grey**: the cells without colour, their lightness kept.
- **hue_N**: the whole image's hue turned by N degrees (5 to 30, one random direction per
  image): another lamp, white balance or stain batch.

An image is *refused* when the white-cell finder sees no cell in it (the guard of `predict`)
or the out-of-scope detector scores it as unlike the training images. `audit_images` returns
the summary with the cases and answers it came from; `workflows.audit_job.audit_run` writes them to
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

from bloodcell.data.batches import made_ahead
from bloodcell.data.cells import (
    CellFinder,
    Cells,
    background_colour,
    erase_cells,
    keep_cells,
    paste_cells,
)
from bloodcell.data.colour import cell_colour, grey_cells, recolour_cells, turn_hue
from bloodcell.models.backends import Backend
from bloodcell.models.refusal import refusals
from bloodcell.records import AuditVariant, AuditVariants, SwapShares

#: The hue turns of the stain audit, in degrees.
HUE_DEGREES = (5, 10, 15, 20, 25, 30)
HUE_VARIANTS = tuple(f"hue_{d}" for d in HUE_DEGREES)
#: The variants, in the order they are reported.
VARIANTS = (
    "original",
    "erased",
    "alone",
    "swapped",
    "corner",
    "recoloured",
    "grey",
    *HUE_VARIANTS,
)
#: Variants made from another image of each other class, and what their label can follow:
#: the image's own class (first word) or the other image's (second).
DONORS = {"swapped": ("cells", "background"), "recoloured": ("shape", "colour")}
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
    #: For a swap, the class of the background; for a recolouring, of the colour donor.
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
        int(c): [int(i) for i in np.flatnonzero(y_true == c) if found[i].count] for c in set(y_true)
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
    return cases + stain_cases(images, y_true, found, by_class, seed)


def stain_cases(
    images: Sequence[Image.Image],
    y_true: np.ndarray,
    found: Sequence[Cells],
    by_class: dict[int, list[int]],
    seed: int,
) -> list[Case]:
    """The stain audit's images of each image with a white cell: its cells in the colour of
    one random image of each other class, in grey, and the image under each hue turn (one
    random direction per image). Drawn from a generator of their own, so the swaps stay the
    draws they were."""
    rng = np.random.default_rng([seed, 1])
    colours = {i: cell_colour(images[i], found[i]) for pool in by_class.values() for i in pool}
    cases = []
    for i, (im, cells) in enumerate(zip(images, found, strict=True)):
        if not cells.count:
            continue
        t = int(y_true[i])
        for other, pool in sorted(by_class.items()):
            colour = colours[int(rng.choice(pool))] if other != t and pool else None
            if colour is not None:
                image = recolour_cells(im, cells, colour)
                cases.append(Case("recoloured", image, t, background=other, source=i))
        cases.append(Case("grey", grey_cells(im, cells), t, source=i))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        for degrees, name in zip(HUE_DEGREES, HUE_VARIANTS, strict=True):
            cases.append(Case(name, turn_hue(im, sign * degrees), t, source=i))
    return cases


def answer(
    backend: Backend, images: Sequence[Image.Image], batch_size: int, tick: Callable[[int], Any]
) -> list[Answer]:
    """The model's top class for each image and whether it is refused (`models.refusal`: no
    white cell found, or out of scope), through the model's own preprocessing as `predict`
    runs it."""
    out: list[Answer] = []

    def prepare(image: Image.Image) -> tuple[np.ndarray, Cells | None]:
        return backend.preprocess.prepare_array(image, guard=True)

    for prepared in made_ahead(prepare, images, batch_size):
        scored = backend.score(np.stack([x for x, _ in prepared]))
        why = refusals(backend, scored, [cells for _, cells in prepared])
        for j, refusal in enumerate(why):
            out.append(Answer(int(np.argmax(scored.probs[j])), refusal.refused))
        tick(len(prepared))
    return out


def summarise(
    cases: Sequence[Case], answers: Sequence[Answer], labels: Sequence[str]
) -> AuditVariants:
    """Per variant: how many, share refused, share answered, accuracy of the top class over
    all of them ("background reliance" for erased) and over the answered; for swaps, among the
    answered, the share whose label follows the cells, the background or neither, per class."""
    result: AuditVariants = {}
    for variant in VARIANTS:
        picked = [(c, a) for c, a in zip(cases, answers, strict=True) if c.variant == variant]
        if picked:
            result[variant] = _variant(picked)
    for variant, words in DONORS.items():
        made = [(c, a) for c, a in zip(cases, answers, strict=True) if c.variant == variant]
        result[f"{variant}_per_class"] = {
            lab: _follows([(c, a) for c, a in made if c.true == k], words)
            for k, lab in enumerate(labels)
        }
        if made:
            result[variant] |= _follows(made, words)
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


def _follows(
    made: Sequence[tuple[Case, Answer]], words: tuple[str, str] = DONORS["swapped"]
) -> SwapShares:
    """Among the answered, the shares whose label is the image's own class (`follows_` the
    first word), the donor's (the second) or neither."""
    answered = [(c, a) for c, a in made if not a.refused]
    n = len(answered)
    own = sum(a.label == c.true for c, a in answered)
    donor = sum(a.label == c.background for c, a in answered)
    shares: SwapShares = {"n": len(made), "n_answered": n}
    shares[f"follows_{words[0]}"] = round(own / n, 4) if n else None  # type: ignore[literal-required]
    shares[f"follows_{words[1]}"] = round(donor / n, 4) if n else None  # type: ignore[literal-required]
    shares["follows_neither"] = round((n - own - donor) / n, 4) if n else None
    return shares


def audit_images(
    backend: Backend,
    images: Sequence[Image.Image],
    y_true: np.ndarray,
    seed: int = DEFAULT_SEED,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[AuditVariants, list[Case], list[Answer]]:
    """The audit over decoded images with their true classes: (summary, cases, answers)."""
    from tqdm import tqdm

    cases = make_cases(images, y_true, backend.preprocess.finder(), seed)
    with tqdm(
        total=len(cases), desc="audit", unit="img", file=sys.stderr, disable=not progress
    ) as bar:
        answers = answer(backend, [c.image for c in cases], batch_size, bar.update)
    return summarise(cases, answers, backend.labels), cases, answers


def targets(summary: AuditVariants) -> dict[str, bool | None]:
    """The audit's pass marks: >= 95% of cell-erased images refused; >= 80% of swaps answered,
    and among them the label follows the cells >= 90% and the background <= 5%; among the
    answered recoloured cells the label follows the shape >= 90% and the colour <= 5%; the
    top class right for >= 95% of the images turned 20 degrees in hue."""
    erased_ = summary.get("erased")
    swaps = summary.get("swapped")
    follows = swaps.get("follows_cells") if swaps else None
    background = swaps.get("follows_background") if swaps else None
    recoloured = summary.get("recoloured") or {}
    shape, colour = recoloured.get("follows_shape"), recoloured.get("follows_colour")
    hue = summary.get("hue_20")
    return {
        "erased_refused": None if not erased_ else erased_["refused"] >= 0.95,
        "swaps_answered": None if not swaps else swaps["answered"] >= 0.80,
        "swaps_follow_cells": None if follows is None else follows >= 0.90,
        "swaps_follow_background": None if background is None else background <= 0.05,
        "recoloured_follow_shape": None if shape is None else shape >= 0.90,
        "recoloured_follow_colour": None if colour is None else colour <= 0.05,
        "hue_20_accuracy": None if not hue else hue["accuracy"] >= 0.95,
    }


def pool(results: Sequence[AuditVariants]) -> AuditVariants:
    """Audit summaries of several folds as one: counts added, shares re-weighted by n."""
    pooled: AuditVariants = {}
    for variant in VARIANTS:
        parts = [r[variant] for r in results if variant in r]
        if not parts:
            continue
        n = sum(p["n"] for p in parts)
        row: dict[str, float | None] = {"n": n}
        for key in ("refused", "answered", "accuracy"):
            row[key] = round(sum(p[key] * p["n"] for p in parts) / n, 4)
        n_ans = [p["answered"] * p["n"] for p in parts]
        acc = [(p["answered_accuracy"] or 0) * k for p, k in zip(parts, n_ans, strict=True)]
        row["answered_accuracy"] = round(sum(acc) / sum(n_ans), 4) if sum(n_ans) else None
        if variant in DONORS:
            k = sum(p["n_answered"] for p in parts)
            row["n_answered"] = k
            own, donor = DONORS[variant]
            for key in (f"follows_{own}", f"follows_{donor}", "follows_neither"):
                num = sum((p[key] or 0) * p["n_answered"] for p in parts)
                row[key] = round(num / k, 4) if k else None
        pooled[variant] = row
    return pooled
