"""The shortcut audit: its image variants on synthetic smears and its shares (the command:
tests/workflows/test_audit_job.py)."""

from __future__ import annotations

import numpy as np
from tests.conftest import LILAC_NUCLEUS, PURPLE_NUCLEUS, smear_field

from bloodcell.data.cells import CellFinder, background_colour
from bloodcell.evaluation.shortcut_audit import (
    CORNER,
    Answer,
    Case,
    alone,
    corner_masked,
    erased,
    make_cases,
    pool,
    summarise,
    swapped,
    targets,
)

FINDER = CellFinder()


def _field(seed: int, colour=PURPLE_NUCLEUS, where=(70, 80)):
    return smear_field(seed, cells=((where[0], where[1], 16, colour),))


def test_erased_leaves_no_cell_pixels_and_nothing_to_find():
    for colour in (PURPLE_NUCLEUS, LILAC_NUCLEUS):
        img = _field(1, colour)
        cells = FINDER.find(img)
        assert cells.count >= 1
        out = np.asarray(erased(img, cells))
        bg = np.array(background_colour(img, cells))
        assert np.abs(out[cells.mask].astype(int) - bg).max() <= 1
        assert FINDER.find(out).count == 0


def test_alone_keeps_the_cells_and_greys_the_rest():
    img = _field(2)
    cells = FINDER.find(img)
    out = np.asarray(alone(img, cells))
    assert np.array_equal(out[cells.mask], np.asarray(img)[cells.mask])
    outside = out[~cells.mask]
    assert (outside == outside[0]).all()  # one flat colour


def test_swapped_keeps_the_cell_pixels_on_the_other_background():
    a, b = _field(3, where=(60, 60)), _field(4, LILAC_NUCLEUS, where=(150, 160))
    ca, cb = FINDER.find(a), FINDER.find(b)
    out = np.asarray(swapped(a, ca, b, cb))
    assert np.array_equal(out[ca.mask], np.asarray(a)[ca.mask])
    found = FINDER.find(out)
    assert found.mask[60, 60] and not found.mask[150, 160]  # a's cell in, b's cell gone


def test_corner_masked_paints_only_the_corner():
    img = _field(5)
    cells = FINDER.find(img)
    out = np.asarray(corner_masked(img, cells))
    h, w = out.shape[:2]
    top, left = int(h * (1 - CORNER[1])), int(w * (1 - CORNER[0]))
    assert (out[top:, left:] == np.array(background_colour(img, cells))).all()
    assert np.array_equal(out[:top], np.asarray(img)[:top])


def test_make_cases_pairs_every_image_with_each_other_class():
    images = [_field(10 + i) for i in range(6)] + [smear_field(99)]  # the last: no white cell
    y = np.array([0, 0, 1, 1, 2, 3, 3])
    cases = make_cases(images, y, FINDER, seed=0)
    kinds = [c.variant for c in cases]
    assert kinds.count("original") == 7
    assert kinds.count("erased") == 6  # none for the image without a cell
    swaps = [c for c in cases if c.variant == "swapped"]
    assert len(swaps) == 6 * 3
    assert all(c.background != c.true for c in swaps)
    again = make_cases(images, y, FINDER, seed=0)
    assert [c.background for c in again] == [c.background for c in cases]


def test_summarise_counts_what_the_labels_follow():
    img = _field(20)
    cases = [
        Case("erased", img, 0),
        Case("erased", img, 1),
        Case("swapped", img, 0, background=1),
        Case("swapped", img, 0, background=2),
        Case("swapped", img, 1, background=0),
        Case("swapped", img, 1, background=2),
    ]
    answers = [
        Answer(0, refused=True),
        Answer(2, refused=False),
        Answer(0, False),  # follows cells
        Answer(2, False),  # follows background
        Answer(3, False),  # neither
        Answer(1, True),  # refused
    ]
    s = summarise(cases, answers, ["a", "b", "c", "d"])
    assert s["erased"]["refused"] == 0.5 and s["erased"]["accuracy"] == 0.5
    assert s["swapped"]["n_answered"] == 3
    assert s["swapped"]["follows_cells"] == round(1 / 3, 4)
    assert s["swapped"]["follows_background"] == round(1 / 3, 4)
    assert s["swapped_per_class"]["a"]["follows_cells"] == 0.5
    t = targets(s)
    assert t["erased_refused"] is False and t["swaps_follow_cells"] is False
    pooled = pool([s, s])
    assert pooled["swapped"]["n"] == 8 and pooled["swapped"]["follows_cells"] == round(1 / 3, 4)


def test_stain_cases_recolour_grey_and_turn_every_image_with_a_cell():
    from bloodcell.data.colour import cell_colour
    from bloodcell.evaluation.shortcut_audit import HUE_VARIANTS

    images = [_field(30 + i, LILAC_NUCLEUS if i % 2 else PURPLE_NUCLEUS) for i in range(4)]
    images.append(smear_field(98))  # no white cell: no stain cases either
    y = np.array([0, 1, 2, 3, 0])
    cases = make_cases(images, y, FINDER, seed=3)
    kinds = [c.variant for c in cases]
    assert kinds.count("recoloured") == 4 * 3 and kinds.count("grey") == 4
    assert all(kinds.count(h) == 4 for h in HUE_VARIANTS)
    for c in cases:
        if c.variant == "recoloured":  # the donor's colour on the image's own cells
            assert c.background is not None and c.background != c.true
            own = FINDER.find(images[c.source])
            got, was = cell_colour(c.image, own), cell_colour(images[c.source], own)
            assert got is not None and was is not None
            assert (
                np.abs(np.subtract(got.mean, was.mean)).max() > 2 or c.background % 2 == c.true % 2
            )
    # The swaps keep their draws whatever the stain cases add.
    swaps = [c.background for c in cases if c.variant == "swapped"]
    assert swaps == [
        c.background for c in make_cases(images, y, FINDER, 3) if c.variant == "swapped"
    ]


def test_recoloured_labels_follow_shape_or_colour_and_pool():
    img = _field(21)
    cases = [
        Case("recoloured", img, 0, background=1),
        Case("recoloured", img, 0, background=2),
        Case("recoloured", img, 1, background=0),
        Case("hue_20", img, 1),
        Case("hue_20", img, 2),
    ]
    answers = [
        Answer(0, False),
        Answer(2, False),
        Answer(1, True),
        Answer(1, False),
        Answer(0, False),
    ]
    s = summarise(cases, answers, ["a", "b", "c", "d"])
    r = s["recoloured"]
    assert r["n_answered"] == 2 and r["follows_shape"] == 0.5 and r["follows_colour"] == 0.5
    assert s["recoloured_per_class"]["a"]["follows_colour"] == 0.5
    assert s["hue_20"]["accuracy"] == 0.5
    t = targets(s)
    assert t["recoloured_follow_shape"] is False and t["recoloured_follow_colour"] is False
    assert t["hue_20_accuracy"] is False
    pooled = pool([s, s])
    assert pooled["recoloured"]["n_answered"] == 4 and pooled["recoloured"]["follows_shape"] == 0.5
