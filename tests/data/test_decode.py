"""decode: the one image decoder, its limits, its error wording, and RGB for every mode."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_image

from bloodcell.data.decode import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
)
from bloodcell.errors import DatasetError


def encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "cell.jpg"
    synthetic_image("benign", seed=1, size=48).save(path, quality=95)
    return path


def refusal(source, **kw) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(source, **kw)
    return info.value


def test_path_and_bytes_decode_alike(jpeg: Path) -> None:
    a = decode_image(jpeg)
    b = decode_image(jpeg.read_bytes(), "cell.jpg")
    assert a.mode == b.mode == "RGB" and a.size == (48, 48)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_error_names_the_file_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    err = refusal(missing)
    assert str(err) == f"{missing}: no such file"
    assert err.reason == "no such file" and err.kind == "missing" and err.name == str(missing)
    assert isinstance(err, DatasetError) and isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))  # crosses DataLoader workers and process pools
    assert (str(copy), copy.reason, copy.kind) == (str(err), err.reason, err.kind)


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").write_bytes(b"")
    for source, name in ((tmp_path / "zero.jpg", str(tmp_path / "zero.jpg")), (b"", "upload")):
        err = refusal(source)
        assert err.kind == "empty" and str(err) == f"{name}: empty file (0 bytes)"


def test_a_folder_is_unreadable(tmp_path: Path) -> None:
    err = refusal(tmp_path)
    assert err.kind == "unreadable" and "cannot read file" in err.reason


def test_corrupt_and_truncated(jpeg: Path) -> None:
    good = jpeg.read_bytes()
    truncated = refusal(good[: len(good) // 2], name="half.jpg")
    assert truncated.kind == "corrupt" and str(truncated).startswith(
        "half.jpg: corrupt or truncated"
    )
    png = encoded(synthetic_image("pre_b", seed=2, size=48))
    assert refusal(png[:300]).kind == "corrupt"
    garbage = refusal(b"\xff\xd8 not really a jpeg" * 10, name="broken.jpg")
    assert garbage.kind in ("corrupt", "format") and garbage.name == "broken.jpg"


def test_not_an_image_or_a_format_not_read(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    err = refusal(notes)
    assert err.kind == "format" and err.reason.startswith("not an image")
    gif = encoded(synthetic_image("pro_b", seed=3, size=32), "GIF")
    err = refusal(gif, name="anim.gif")
    assert err.kind == "format" and "JPEG, PNG, BMP, TIFF and WebP" in str(err)
    assert decode_image(gif, formats=None).mode == "RGB"  # a caller may widen the formats


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF", "WEBP"])
def test_every_allowed_format_decodes(fmt: str) -> None:
    img = decode_image(encoded(synthetic_image("benign", seed=4, size=32), fmt))
    assert img.mode == "RGB" and img.size == (32, 32)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, at open
def test_too_many_pixels_is_refused_before_decoding() -> None:
    bomb = encoded(Image.new("1", (12_000, 12_000)))  # 144 MP in a few kB
    err = refusal(bomb, name="bomb.png")
    assert err.kind == "too_large" and "pixels" in str(err) and str(err).startswith("bomb.png: ")
    small = encoded(Image.new("RGB", (100, 100)))
    err = refusal(small, max_pixels=80 * 80)
    assert err.reason == "100x100 pixels is over the limit of 6,400 pixels; use a smaller image"
    assert decode_image(small, max_pixels=100 * 100).size == (100, 100)
    assert DEFAULT_MAX_PIXELS == 40_000_000


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "I;16", "CMYK"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    rgb = synthetic_image("early_pre_b", seed=5, size=24)
    img = rgb.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    out = decode_image(encoded(img, fmt))
    assert out.mode == "RGB" and out.size == (24, 24)
    if mode in ("RGBA", "P"):  # no colour is lost through these modes' round trip
        assert np.abs(np.asarray(out, int) - np.asarray(rgb, int)).max() <= 48


def test_grayscale_is_replicated_to_three_channels() -> None:
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = np.asarray(decode_image(encoded(gray)))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[..., 0].tolist() == np.asarray(gray).tolist()


def test_exif_orientation_is_not_applied() -> None:
    """No reader applied EXIF orientation before the decoder was shared: pixels stay as stored,
    exactly as the model was trained on them."""
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encoded(img, "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    assert decode_image(data).size == (40, 20)
