"""The NumPy/Pillow preprocessing (`Preprocess.array`, `prepare_array`) gives the numbers of the
torch transform (`Preprocess.transform`, `prepare`), on images of several sizes, for both
normalisations, with the white-cell step and with stain normalisation; and importing it loads
no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tests.conftest import PURPLE_NUCLEUS, smear_field, synthetic_image

from bloodcell.data.cells import CellFinder
from bloodcell.data.preprocess import Preprocess

#: (height, width) of the random images: the model size itself, larger, smaller, not square.
SIZES = ((64, 64), (224, 224), (97, 131), (300, 200), (640, 480), (50, 60), (1000, 1000))
TOLERANCE = 1e-6


def _random_image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """Noise over a smooth field: every resampling weight and rounding case gets exercised."""
    field = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
    smooth = np.asarray(field.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-40, 40, size=(h, w, 3))
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def _close(numpy_input: np.ndarray, torch_input: object) -> float:
    ref = torch_input.numpy()  # type: ignore[attr-defined]
    assert numpy_input.shape == ref.shape and numpy_input.dtype == np.float32
    return float(np.abs(numpy_input - ref).max())


@pytest.mark.parametrize("normalize", ["imagenet", "per_image"])
@pytest.mark.parametrize("image_size", [64, 224])
def test_numpy_equals_torch_transform(normalize: str, image_size: int) -> None:
    pre = Preprocess(image_size=image_size, normalize=normalize)
    tf = pre.transform()
    rng = np.random.default_rng(image_size)
    for h, w in SIZES:
        img = _random_image(rng, h, w)
        assert _close(pre.array(img), tf(img)) <= TOLERANCE, (h, w)


@pytest.mark.parametrize("normalize", ["imagenet", "per_image"])
def test_numpy_equals_torch_with_the_cells_step(normalize: str) -> None:
    """The model sees only the white cells: the same grey outside them, the same numbers."""
    pre = Preprocess(image_size=64, normalize=normalize, cells=CellFinder().to_dict())
    tf = pre.transform()
    for i, size in enumerate((224, 160, 96, 300)):
        img = smear_field(i, size=size, cells=((size // 2, size // 3, size // 10, PURPLE_NUCLEUS),))
        assert _close(pre.array(img), tf(img)) <= TOLERANCE, size
        x, cells = pre.prepare_array(img, guard=True)
        t, cells_t = pre.prepare(img, guard=True)
        assert _close(x, t) <= TOLERANCE
        assert cells is not None and cells_t is not None and cells.count >= 1
        assert cells.boxes == cells_t.boxes and np.array_equal(cells.mask, cells_t.mask)
        assert np.abs(x - pre.array(img)).max() == 0  # the finder ran once, to the same effect


def test_numpy_equals_torch_with_grey_cells() -> None:
    """The grey variant: the luminance step is torchvision's Grayscale, pixel for pixel."""
    from torchvision.transforms import v2

    from bloodcell.data.preprocess import Luminance

    pre = Preprocess(image_size=64, cells=CellFinder().to_dict(), grayscale=True)
    tf = pre.transform()
    for i, size in enumerate((224, 100)):
        img = smear_field(i, size=size, cells=((size // 2, size // 2, size // 8, PURPLE_NUCLEUS),))
        assert np.array_equal(
            np.asarray(Luminance()(img)), np.asarray(v2.Grayscale(num_output_channels=3)(img))
        )
        x, _ = pre.prepare_array(img)
        assert _close(x, tf(img)) <= TOLERANCE
        assert _close(x, pre.prepare(img)[0]) <= TOLERANCE


def test_numpy_equals_torch_with_the_shape_recipe_rescaled_or_not() -> None:
    """The shape recipe's view and scale step: the torch path runs them as one step, with the
    same pixels as `prepare_array`, for a field at the training scale and a magnified crop."""
    from tests.data.test_scale import red_cell_field

    from bloodcell.train.config import recipe

    pre = recipe("shape", image_size=64).preprocess()
    tf = pre.transform()
    magnified = red_cell_field(360, 70.0, cells=12)
    at_scale = smear_field(3, size=224, cells=((112, 112, 20, PURPLE_NUCLEUS),))
    for img in (at_scale, magnified):
        x, cells = pre.prepare_array(img)
        assert _close(x, tf(img)) <= TOLERANCE
    assert cells is not None and cells.rescaled and cells.scale is not None and cells.scale > 3


def test_numpy_equals_torch_with_stain_normalisation() -> None:
    from bloodcell.data.stain import StainNormalizer

    stain = StainNormalizer.fit(synthetic_image("benign", 1, size=96), "reinhard").to_dict()
    pre = Preprocess(image_size=64, stain=stain)
    tf = pre.transform()
    rng = np.random.default_rng(5)
    for h, w in ((64, 64), (120, 90)):
        img = _random_image(rng, h, w)
        assert _close(pre.array(img), tf(img)) <= TOLERANCE


def test_guard_off_finds_no_cells_unless_the_model_needs_them() -> None:
    img = synthetic_image("pro_b", 2, size=64)
    assert Preprocess(image_size=64).prepare_array(img, guard=False)[1] is None
    assert Preprocess(image_size=64).prepare_array(img, guard=True)[1] is not None
    cells_model = Preprocess(image_size=64, cells=CellFinder().to_dict())
    assert cells_model.prepare_array(img, guard=False)[1] is not None


def test_pixels_writes_into_a_given_array() -> None:
    pre = Preprocess(image_size=32)
    img = synthetic_image("benign", 4, size=48)
    out = np.full((3, 32, 32), np.nan, np.float32)
    assert pre.pixels(img, out=out) is out
    assert np.array_equal(out, pre.array(img))


def test_importing_it_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "from bloodcell.data.preprocess import Preprocess\n"
        "from bloodcell.data.cells import CellFinder\n"
        "from PIL import Image\n"
        "pre = Preprocess(image_size=32, normalize='per_image', cells=CellFinder().to_dict())\n"
        "x, cells = pre.prepare_array(Image.new('RGB', (40, 40), (200, 180, 190)))\n"
        "assert x.shape == (3, 32, 32) and cells.count == 0\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
