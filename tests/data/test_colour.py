"""The cells' colour: the model's standardised lightness view, and the stain audit's edits
(recolour keeps the mask and the lightness, grey has no chroma, hue turns).

Synthetic smears only (`tests.data.test_cells.field`).
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from PIL import Image
from tests.data.test_cells import LILAC_CELL, PURPLE_AT, PURPLE_CELL, field, smear

from bloodcell.data.cells import find_cells
from bloodcell.data.colour import (
    BACKGROUND,
    CELL_MEAN,
    CELL_SPREAD,
    CellColour,
    CellLightness,
    cell_colour,
    cell_lightness,
    grey_cells,
    recolour_cells,
    turn_hue,
)
from bloodcell.data.corruptions import brightness


def _lab(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2LAB).astype(int)


def test_lightness_view_is_grey_standardised_inside_and_flat_outside() -> None:
    image = field()
    cells = find_cells(image)
    view = np.asarray(cell_lightness(image, cells)).astype(float)
    assert (view[..., 0] == view[..., 1]).all() and (view[..., 1] == view[..., 2]).all()
    inside, outside = view[..., 0][cells.mask], view[..., 0][~cells.mask]
    assert (outside == BACKGROUND).all()
    assert inside.mean() == pytest.approx(CELL_MEAN, abs=1.0)
    assert inside.std() == pytest.approx(CELL_SPREAD, rel=0.05)


def test_lightness_view_ignores_the_cells_colour_and_the_lamp() -> None:
    """Another class's colour (lightness kept) or a dimmer lamp leave the view as it was, to
    rounding, given the same cells."""
    image = field()
    cells = find_cells(image)
    view = np.asarray(cell_lightness(image, cells)).astype(int)
    pink = recolour_cells(image, cells, CellColour((160.0, 120.0), (4.0, 6.0)))
    dim = brightness(image, 0.7, np.random.default_rng(0))
    for other in (pink, dim):
        moved = np.abs(np.asarray(cell_lightness(other, cells)).astype(int) - view)
        assert moved[cells.mask].mean() < 3.0
        assert moved.max() <= 25  # rounding and clipping, not a different picture


def test_lightness_view_of_a_field_without_cells_is_flat() -> None:
    image = smear(red=[(60, 60, 11)])
    cells = find_cells(image)
    assert cells.count == 0
    assert (np.asarray(cell_lightness(image, cells)) == BACKGROUND).all()


def test_lightness_step_pickles_and_equals_the_function() -> None:
    image = field()
    step = pickle.loads(pickle.dumps(CellLightness()))
    assert step == CellLightness() and hash(step) == hash(CellLightness())
    expected = np.asarray(cell_lightness(image, find_cells(image)))
    assert np.array_equal(np.asarray(step(image)), expected)


def test_recolour_takes_the_donors_colour_and_keeps_lightness_and_outside() -> None:
    purple = smear(white=[(PURPLE_AT, PURPLE_CELL)])
    lilac = smear(white=[(PURPLE_AT, LILAC_CELL)], seed=1)
    cells, donor_cells = find_cells(purple), find_cells(lilac)
    donor = cell_colour(lilac, donor_cells)
    assert donor is not None
    out = recolour_cells(purple, cells, donor)
    before, after = _lab(purple), _lab(out)
    mask = cells.mask
    assert np.array_equal(np.asarray(out)[~mask], np.asarray(purple)[~mask])
    assert np.abs(after[..., 0][mask] - before[..., 0][mask]).mean() < 1.5
    got = cell_colour(out, cells)
    assert got is not None
    assert np.allclose(got.mean, donor.mean, atol=2.0)
    original = cell_colour(purple, cells)
    assert original is not None and not np.allclose(original.mean, donor.mean, atol=5.0)


def test_grey_cells_have_no_chroma_and_keep_lightness() -> None:
    image = field()
    cells = find_cells(image)
    out = grey_cells(image, cells)
    lab, before = _lab(out), _lab(image)
    mask = cells.mask
    assert np.abs(lab[..., 1:][mask] - 128).max() <= 2
    assert np.abs(lab[..., 0][mask] - before[..., 0][mask]).mean() < 1.5
    assert np.array_equal(np.asarray(out)[~mask], np.asarray(image)[~mask])


def test_turn_hue_moves_colours_not_greys() -> None:
    image = field()
    assert np.array_equal(np.asarray(turn_hue(image, 0)), np.asarray(image))
    turned = turn_hue(image, 20)
    hue_before = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(int)
    hue_after = cv2.cvtColor(np.asarray(turned), cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(int)
    cells = find_cells(image)
    shift = (hue_after - hue_before)[cells.mask] % 256
    assert np.median(shift) == pytest.approx(20 / 360 * 256, abs=2)
    grey = Image.new("RGB", (8, 8), (120, 120, 120))
    assert np.array_equal(np.asarray(turn_hue(grey, 25)), np.asarray(grey))


def test_tint_view_keeps_colour_variation_but_not_the_cells_colour() -> None:
    """With chroma, nucleus and cytoplasm differ in tint, but another class's cell colour (a
    per-channel change of a* and b*) leaves the view as it was, to rounding."""
    image = field()
    cells = find_cells(image)
    view = cell_lightness(image, cells, chroma=True)
    lab = _lab(view)
    inside = lab[..., 1:][cells.mask]
    assert np.abs(inside.mean(axis=0) - 128).max() <= 1.5  # neutral on average
    assert inside.std(axis=0).min() > 2  # but not grey
    assert (lab[..., 1:][~cells.mask] == 128).all()
    pink = recolour_cells(image, cells, CellColour((160.0, 120.0), (4.0, 6.0)))
    moved = np.abs(_lab(cell_lightness(pink, cells, chroma=True)) - lab)[cells.mask]
    assert moved.mean() < 2.0
    step = CellLightness(chroma=True)
    assert step != CellLightness() and pickle.loads(pickle.dumps(step)) == step


def test_slide_reference_keeps_how_dark_a_cell_is_and_ignores_the_lamp() -> None:
    """Against the slide's white: a dimmer lamp leaves the view as it was (to rounding), and a
    darker-stained cell stays darker (the cells' own statistics would make them alike)."""
    light = smear(white=[(PURPLE_AT, LILAC_CELL)])
    dark = smear(white=[(PURPLE_AT, PURPLE_CELL)])
    cells = find_cells(light)
    view = np.asarray(cell_lightness(light, cells, reference="slide")).astype(int)
    dim = brightness(light, 0.7, np.random.default_rng(0))
    moved = np.abs(np.asarray(cell_lightness(dim, cells, reference="slide")).astype(int) - view)
    assert moved[cells.mask].mean() < 3.0
    darker = np.asarray(cell_lightness(dark, cells, reference="slide")).astype(int)
    assert darker[cells.mask].mean() < view[cells.mask].mean() - 10
    with pytest.raises(ValueError, match="reference"):
        cell_lightness(light, cells, reference="lamp")


@pytest.mark.parametrize(("chroma", "reference"), [(False, "cells"), (True, "slide")])
def test_lightness_view_equals_the_formula_on_each_pixel(chroma: bool, reference: str) -> None:
    """The view is computed once per 8-bit level and looked up; it must equal the formula of
    the docstring worked out on every pixel (all but a rounding tie: the chroma's spread is
    summed in another order)."""
    image = smear(white=[(PURPLE_AT, LILAC_CELL)])
    cells = find_cells(image)
    lab, mask = _lab(image).astype(np.float64), cells.mask
    expected = np.empty_like(lab)
    expected[...] = (BACKGROUND, 128, 128)
    light = lab[..., 0][mask]
    if reference == "slide":
        gain = (235.0 + 40.8) / (np.percentile(lab[..., 0][~mask], 90) + 40.8)
        expected[..., 0][mask] = (light + 40.8) * gain - 40.8
    else:
        expected[..., 0][mask] = CELL_MEAN + (light - light.mean()) * CELL_SPREAD / light.std()
    if chroma:
        ab = lab[..., 1:][mask]
        expected[..., 1:][mask] = 128 + (ab - ab.mean(axis=0)) * 6.0 / ab.std(axis=0)
    levels = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    if chroma:
        expected_rgb = cv2.cvtColor(levels, cv2.COLOR_LAB2RGB).astype(int)
    else:
        expected_rgb = np.repeat(levels[..., :1], 3, axis=2).astype(int)
    view = np.asarray(cell_lightness(image, cells, chroma=chroma, reference=reference))
    differ = np.abs(view.astype(int) - expected_rgb).max(axis=2)
    assert (differ == 0).mean() > 0.999 and differ.max() <= 3
