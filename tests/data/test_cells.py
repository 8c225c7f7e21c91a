"""White-cell finder (stain colour): finds purple and pale lilac white cells, never red cells,
background, flat images or scale-bar text; and the image edits built on its mask.

Synthetic smears only, drawn here in numpy/PIL (no dataset image is ever copied).
"""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from bloodcell.data.cells import (
    NEUTRAL,
    CellFinder,
    Cells,
    KeepCells,
    background_colour,
    erase_cells,
    find_cells,
    keep_cells,
    paste_cells,
)

YELLOWISH = (246, 240, 212)  # Pro slides
BLUISH = (212, 228, 246)  # Pre slides
PINK_RED_CELL = (232, 172, 170)  # rim (225, 160, 160): pink/red, no nucleus
GREY_RED_CELL = (176, 186, 222)  # this dataset's red cells look grey-blue
LILAC_RED_CELL = (214, 196, 236)  # faintly lilac red cells, as on some Benign slides
LILAC_CAST = (232, 215, 245)  # a background with a purple stain cast
#: (cytoplasm, nucleus) of a Benign/Early/Pre-like cell and of a pale Pro-like cell.
PURPLE_CELL = ((178, 150, 238), (112, 78, 212))
LILAC_CELL = ((230, 196, 248), (204, 160, 240))

Disc = tuple[int, int, int]  # (row, col, radius)


def _disc(shape: tuple[int, int], disc: Disc) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    cy, cx, r = disc
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def smear(
    background: tuple[int, int, int] = YELLOWISH,
    white: list[tuple[Disc, tuple[tuple[int, int, int], tuple[int, int, int]]]] | None = None,
    red: list[Disc] | None = None,
    red_colour: tuple[int, int, int] = PINK_RED_CELL,
    size: tuple[int, int] = (224, 224),
    seed: int = 0,
) -> Image.Image:
    """A smear field: flat background, red-cell discs with a darker rim and a pale centre, and
    white cells as a cytoplasm disc around a nucleus disc; slightly blurred, with noise."""
    h, w = size
    img = np.empty((h, w, 3), np.float64)
    img[:] = background
    for cy, cx, r in red or []:
        img[_disc((h, w), (cy, cx, r))] = np.asarray(red_colour) - 8
        img[_disc((h, w), (cy, cx, r - 2))] = red_colour
        img[_disc((h, w), (cy, cx, r // 3))] = (np.asarray(red_colour) + background) / 2
    for (cy, cx, r), (cytoplasm, nucleus) in white or []:
        img[_disc((h, w), (cy, cx, r))] = cytoplasm
        img[_disc((h, w), (cy, cx, int(r * 0.7)))] = nucleus
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 3, img.shape)
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.8))


PURPLE_AT: Disc = (60, 64, 18)
LILAC_AT: Disc = (150, 150, 17)
RED_AT: list[Disc] = [
    (25, 160, 11),
    (60, 140, 11),
    (110, 40, 11),
    (190, 60, 11),
    (200, 200, 11),
    (105, 110, 11),
]


def field(background: tuple[int, int, int] = YELLOWISH, **kw: object) -> Image.Image:
    """Two white cells (purple, lilac) among pink red cells."""
    white = [(PURPLE_AT, PURPLE_CELL), (LILAC_AT, LILAC_CELL)]
    return smear(background, white=white, red=RED_AT, **kw)  # type: ignore[arg-type]


def overlaps(box: tuple[int, int, int, int], disc: Disc) -> bool:
    top, left, bottom, right = box
    cy, cx, r = disc
    return top < cy + r and bottom > cy - r and left < cx + r and right > cx - r


@pytest.mark.parametrize("background", [YELLOWISH, BLUISH], ids=["yellowish", "bluish"])
def test_finds_purple_and_lilac_cells_but_no_red_cell(background: tuple[int, int, int]) -> None:
    img = field(background)
    cells = find_cells(img)
    assert cells.count == 2
    assert cells.mask.shape == (224, 224) and cells.mask.dtype == bool
    for disc in (PURPLE_AT, LILAC_AT):
        assert sum(overlaps(b, disc) for b in cells.boxes) == 1
        assert cells.mask[_disc((224, 224), disc)].mean() > 0.95  # the whole cell, edge included
    for disc in RED_AT:
        assert cells.mask[_disc((224, 224), disc)].mean() < 0.05
    cell_area = sum(_disc((224, 224), d).sum() for d in (PURPLE_AT, LILAC_AT))
    assert cells.fraction == pytest.approx(cells.mask.mean())
    assert cell_area / 224**2 < cells.fraction < 2 * cell_area / 224**2  # a margin, not more


def test_boxes_hold_the_mask_and_are_exclusive() -> None:
    cells = find_cells(field())
    covered = np.zeros_like(cells.mask)
    for top, left, bottom, right in cells.boxes:
        assert 0 <= top < bottom <= 224 and 0 <= left < right <= 224
        inside = cells.mask[top:bottom, left:right]
        # tight: the mask reaches all four sides of its box
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        covered[top:bottom, left:right] = True
    assert not (cells.mask & ~covered).any()


@pytest.mark.parametrize("red_colour", [PINK_RED_CELL, GREY_RED_CELL], ids=["pink", "grey-blue"])
@pytest.mark.parametrize("background", [YELLOWISH, BLUISH], ids=["yellowish", "bluish"])
def test_no_cell_in_a_field_of_red_cells(
    background: tuple[int, int, int], red_colour: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(1)
    red = [(int(y), int(x), 11) for y, x in rng.integers(12, 212, size=(30, 2))]
    img = smear(background, red=red, red_colour=red_colour)
    cells = find_cells(img)
    assert cells.count == 0 and not cells.mask.any() and cells.fraction == 0.0


def test_faintly_lilac_red_cells_are_not_cells() -> None:
    """Their colour scores a little leukocyte stain (above `low`), but a cell needs a core of
    stronger stain (above `high`): the hysteresis is what keeps them out."""
    img = smear(YELLOWISH, red=RED_AT, red_colour=LILAC_RED_CELL)
    assert find_cells(img).count == 0
    white = [(PURPLE_AT, PURPLE_CELL)]
    assert (
        find_cells(smear(YELLOWISH, white=white, red=RED_AT, red_colour=LILAC_RED_CELL)).count == 1
    )


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_thin_strands_touching_a_cell_stay_out_of_its_mask(offset: int) -> None:
    """A 5 px lilac strand (a red-cell rim, a fibre) running from a white cell: faintly
    stained, it would join the cell's extent; the opening cuts it off, at any pixel phase."""
    h = w = 224
    img = np.empty((h, w, 3))
    img[:] = YELLOWISH
    cy, cx, r = PURPLE_AT
    img[cy + offset : cy + offset + 5, cx : cx + 100] = LILAC_RED_CELL
    img[_disc((h, w), PURPLE_AT)] = PURPLE_CELL[0]
    img[_disc((h, w), (cy, cx, int(r * 0.7)))] = PURPLE_CELL[1]
    pil = Image.fromarray(img.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    cells = find_cells(pil)
    assert cells.count == 1
    assert cells.mask[_disc((h, w), PURPLE_AT)].mean() > 0.95
    assert not cells.mask[:, cx + r + 8 :].any()  # nothing beyond the cell and its margin


def test_threshold_is_relative_to_the_images_own_background() -> None:
    """On a background with a purple cast (which alone scores above `low`), the cell is still
    found and the background is not: the score is taken relative to the image's background."""
    img = smear(LILAC_CAST, white=[(PURPLE_AT, PURPLE_CELL)], red=RED_AT)
    cells = find_cells(img)
    assert cells.count == 1
    assert cells.mask[_disc((224, 224), PURPLE_AT)].mean() > 0.95
    assert cells.fraction < 0.1


@pytest.mark.parametrize(
    "colour", [(255, 255, 255), (0, 0, 0), (128, 128, 128), (150, 110, 230)], ids=str
)
def test_no_cell_in_a_flat_image(colour: tuple[int, int, int]) -> None:
    # Even a flat purple: without a background to stand out from, nothing is a cell.
    cells = find_cells(Image.new("RGB", (224, 224), colour))
    assert cells.count == 0 and not cells.mask.any()


@pytest.mark.parametrize("text_colour", [(0, 0, 0), (220, 20, 20)], ids=["black", "red"])
def test_scale_bar_text_is_not_a_cell(text_colour: tuple[int, int, int]) -> None:
    """The dataset's "200 px" scale-bar label in the bottom-right corner, JPEG-compressed
    (whose ringing puts purple fringes around sharp strokes)."""
    img = smear(BLUISH, red=RED_AT)
    draw = ImageDraw.Draw(img)
    draw.rectangle((176, 204, 222, 220), fill=(255, 255, 255))
    draw.text((182, 206), "200 px", fill=text_colour)
    draw.line((178, 212, 178, 219), fill=text_colour, width=1)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=75)
    jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert find_cells(jpeg).count == 0
    # ...while a real cell next to the label is still found.
    with_cell = smear(BLUISH, white=[((195, 150, 17), PURPLE_CELL)], red=RED_AT)
    ImageDraw.Draw(with_cell).text((182, 206), "200 px", fill=text_colour)
    assert find_cells(with_cell).count == 1


def test_erase_cells_leaves_a_cell_free_field() -> None:
    img = field()
    cells = find_cells(img)
    erased = erase_cells(img, cells)
    assert erased.size == img.size and erased.mode == "RGB"
    bg = background_colour(img, cells)
    assert np.abs(np.array(bg) - YELLOWISH).max() <= 3  # the slide's own background
    arr = np.asarray(erased)
    assert (arr[cells.mask] == bg).all()
    assert (arr[~cells.mask] == np.asarray(img)[~cells.mask]).all()
    again = find_cells(erased)
    assert again.count == 0
    for disc in (PURPLE_AT, LILAC_AT):
        assert not again.mask[_disc((224, 224), disc)].any()


def test_erase_cells_with_a_given_fill() -> None:
    img = field()
    cells = find_cells(img)
    arr = np.asarray(erase_cells(img, cells, fill=(1, 2, 3)))
    assert (arr[cells.mask] == (1, 2, 3)).all()


@pytest.mark.parametrize("fill", [NEUTRAL, (0, 0, 0)], ids=str)
def test_keep_cells_fills_everything_outside_the_mask(fill: tuple[int, int, int]) -> None:
    img = field()
    cells = find_cells(img)
    out = np.asarray(keep_cells(img, cells, fill))
    assert (out[~cells.mask] == fill).all()
    assert (out[cells.mask] == np.asarray(img)[cells.mask]).all()
    assert cells.mask.any() and not cells.mask.all()


def test_keep_cells_on_a_cell_free_image_is_all_fill() -> None:
    img = smear(red=RED_AT)
    out = np.asarray(keep_cells(img, find_cells(img)))
    assert (out == NEUTRAL).all()


def test_neutral_fill_scores_no_cell() -> None:
    """What keep_cells puts around the cells must not itself look like a cell, so that a
    KeepCells output run through the finder again keeps the same cells."""
    img = field()
    kept = keep_cells(img, find_cells(img))
    assert find_cells(kept).count == 2


def test_paste_cells_keeps_the_source_cell_pixels_exactly() -> None:
    src = field(YELLOWISH)
    cells = find_cells(src)
    onto = smear(BLUISH, red=RED_AT[:3], size=(300, 260), seed=5)  # another size: resized
    out = paste_cells(src, cells, onto)
    assert out.size == src.size
    arr = np.asarray(out)
    assert (arr[cells.mask] == np.asarray(src)[cells.mask]).all()
    resized = np.asarray(onto.resize(src.size, Image.Resampling.BILINEAR))
    assert (arr[~cells.mask] == resized[~cells.mask]).all()
    assert find_cells(out).count == 2  # the same cells, now on a bluish slide


def test_edits_refuse_a_mask_of_another_size() -> None:
    cells = find_cells(field())
    small = Image.new("RGB", (100, 100), YELLOWISH)
    for edit in (keep_cells, erase_cells):
        with pytest.raises(ValueError, match="mask"):
            edit(small, cells)
    with pytest.raises(ValueError, match="mask"):
        paste_cells(small, cells, small)


def test_to_dict_from_dict_round_trip() -> None:
    finder = CellFinder(work_size=112, low=0.1, high=0.3, min_area=0.002, margin=3, opening=0)
    d = json.loads(json.dumps(finder.to_dict()))  # as saved with a model
    assert CellFinder.from_dict(d) == finder
    assert CellFinder.from_dict(CellFinder().to_dict()) == CellFinder()
    assert CellFinder.from_dict({}) == CellFinder()  # missing keys: defaults
    with pytest.raises(ValueError, match="unknown"):
        CellFinder.from_dict({"threshold": 1})


@pytest.mark.parametrize(
    "kw", [{"low": 0.3, "high": 0.2}, {"min_area": 0.5, "max_area": 0.1}, {"margin": -1}], ids=str
)
def test_bad_parameters_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        CellFinder(**kw)


def test_parameters_change_the_result() -> None:
    img = field()
    base = find_cells(img)
    assert CellFinder(margin=8).find(img).fraction > base.fraction
    assert CellFinder(min_area=0.05).find(img).count == 0  # cells smaller than 5% of the image


def test_keep_cells_transform_pickles_and_matches_keep_cells() -> None:
    step = KeepCells(CellFinder(margin=3), fill=(10, 20, 30))
    clone = pickle.loads(pickle.dumps(step))
    assert clone == step and hash(clone) == hash(step)
    img = field()
    out = clone(img)
    want = keep_cells(img, CellFinder(margin=3).find(img), (10, 20, 30))
    assert isinstance(out, Image.Image) and out.size == img.size
    assert np.array_equal(np.asarray(out), np.asarray(want))


@pytest.mark.parametrize("size", [(300, 200), (96, 96), (448, 448)], ids=str)
def test_any_image_size(size: tuple[int, int]) -> None:
    """Same scene drawn at another size: the same two cells (area limits are fractions)."""
    h, w = size
    sy, sx = h / 224, w / 224
    s = min(sy, sx)

    def at(d: Disc) -> Disc:
        return (round(d[0] * sy), round(d[1] * sx), max(3, round(d[2] * s)))

    white = [(at(PURPLE_AT), PURPLE_CELL), (at(LILAC_AT), LILAC_CELL)]
    img = smear(white=white, red=[at(d) for d in RED_AT], size=size)
    cells = find_cells(img)
    assert cells.mask.shape == (h, w)
    assert cells.count == 2
    for disc, _ in white:
        assert cells.mask[_disc((h, w), disc)].mean() > 0.9


def test_grayscale_and_other_inputs() -> None:
    img = field()
    gray = img.convert("L")
    # A grayscale-mode image (converted to RGB, or as is) has no stain colour: no cell, no error.
    assert find_cells(gray.convert("RGB")).count == 0
    assert find_cells(gray).count == 0
    assert find_cells(np.asarray(gray)).count == 0  # a 2-D array
    # An array, an RGBA image and an RGB image give the same cells.
    ref = find_cells(img)
    for other in (np.asarray(img), img.convert("RGBA"), np.asarray(img.convert("RGBA"))):
        got = find_cells(other)
        assert got.boxes == ref.boxes and np.array_equal(got.mask, ref.mask)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (7, 5, 3), (0, 0, 3), (0, 10, 3)])
def test_tiny_and_empty_inputs(shape: tuple[int, int, int]) -> None:
    arr = np.full(shape, 200, np.uint8)
    arr[..., 1] = 100  # purple-ish, but nothing to stand out from
    cells = find_cells(arr)
    assert cells.mask.shape == shape[:2] and cells.count == 0 and cells.fraction == 0.0
    img = Image.fromarray(arr) if arr.size else Image.new("RGB", shape[1::-1])
    assert find_cells(img).mask.shape == shape[:2]
    for out in (
        keep_cells(img, cells),
        erase_cells(img, cells),
        paste_cells(img, cells, Image.new("RGB", (4, 4))),
    ):
        assert out.size == img.size and out.mode == "RGB"


def test_cells_count_is_boxes() -> None:
    cells = Cells(np.zeros((4, 4), bool), ((0, 0, 2, 2), (2, 2, 4, 4)))
    assert cells.count == 2 and cells.fraction == 0.0


def test_white_balance_finds_the_same_cells_under_a_dimmer_lamp() -> None:
    """Without it, a field photographed at 0.6x exposure loses or grows its cells; with it, the
    same cells are found (the stain is measured against the field's own white)."""
    from bloodcell.data.corruptions import brightness

    img = field()
    dim = brightness(img, 0.6, np.random.default_rng(0))
    balanced = CellFinder(white_balance=True)
    a, b = balanced.find(img), balanced.find(dim)
    assert a.count == b.count == 2
    assert (a.mask & b.mask).sum() / (a.mask | b.mask).sum() > 0.9
    assert CellFinder.from_dict(balanced.to_dict()) == balanced
    assert (
        CellFinder.from_dict({k: v for k, v in balanced.to_dict().items() if k != "white_balance"})
        == CellFinder()
    )
