"""The one image decoder: every reader of images opens them here.

Why one: training, `data verify`, `data show`, robustness, `predict`, `explain` and the server
then accept the same formats, refuse the same oversized images before any pixel is decoded, and
fail with the same words. The limits are the server's: an upload is untrusted, and a file found
in a folder is no safer.

EXIF orientation is not applied: no reader ever applied it, so the pixels the model was trained
on are the pixels it is shown (and a smear has no orientation to correct).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

from PIL import Image, UnidentifiedImageError

from bloodcell.errors import DatasetError

#: 40 MP: a full microscope frame fits; a decompression bomb does not.
DEFAULT_MAX_PIXELS = 40_000_000
#: Only these decoders ever see a file: fewer parsers, less attack surface.
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
FORMAT_NAMES = "JPEG, PNG, BMP, TIFF and WebP"

#: What went wrong, for callers that answer differently (the server: 413 for "too_large").
Kind = Literal["missing", "unreadable", "empty", "format", "corrupt", "too_large"]


class ImageDecodeError(DatasetError, ValueError):
    """A file or upload that cannot be used as an image.

    `str()` names the file and the problem ("x.jpg: empty file (0 bytes)"); `reason` is the
    problem alone, for reports that show the path in a column of their own. It is also a
    ValueError: a bad image is a bad value, and callers that caught PIL's errors keep working.
    """

    def __init__(self, name: str, reason: str, kind: Kind) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.kind = kind

    def __reduce__(self) -> tuple:
        # Exceptions pickle through their args; this one has three (DataLoader workers, pools).
        return (type(self), (self.name, self.reason, self.kind))


def decode_image(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = IMAGE_FORMATS,
) -> Image.Image:
    """Decode a file (path) or an upload (bytes) fully, as RGB.

    The format must be one of `formats` and width x height at most `max_pixels` (checked from
    the header, before the pixels are decoded). `name` is what errors call the image (default:
    the path). Raises ImageDecodeError for every failure.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _decode(io.BytesIO(data), len(data), name or "upload", max_pixels, formats)
    path = Path(source)
    name = name or str(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise ImageDecodeError(name, "no such file", "missing") from None
    except OSError as exc:
        raise ImageDecodeError(
            name, f"cannot read file: {exc.strerror or exc}", "unreadable"
        ) from None
    with fh:
        return _decode(fh, os.fstat(fh.fileno()).st_size, name, max_pixels, formats)


def _decode(
    fh: IO[bytes], size: int, name: str, max_pixels: int, formats: Sequence[str] | None
) -> Image.Image:
    if size == 0:
        raise ImageDecodeError(name, "empty file (0 bytes)", "empty")
    try:
        with Image.open(fh, formats=None if formats is None else tuple(formats)) as img:
            _check_pixels(img.size, name, max_pixels)
            img.load()  # full decode: truncated or corrupt data fails here, not at open()
            # An RGB image is returned as decoded: convert() would copy every pixel (a quarter
            # of the decode time of a 224 px JPEG); its pixels stay valid once the file closes.
            return img if img.mode == "RGB" else img.convert("RGB")
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            name, f"too many pixels to decode safely ({exc})", "too_large"
        ) from None
    except UnidentifiedImageError:
        reason = f"not an image (unknown or unsupported format; {FORMAT_NAMES} are read)"
        raise ImageDecodeError(name, reason, "format") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the image is unusable
        why = str(exc) or type(exc).__name__
        raise ImageDecodeError(name, f"corrupt or truncated image ({why})", "corrupt") from None


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    # PIL itself warns above MAX_IMAGE_PIXELS (a possible bomb): no reader goes past that either.
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    width, height = size
    if width * height > limit:
        raise ImageDecodeError(
            name,
            f"{width}x{height} pixels is over the limit of {limit:,} pixels; use a smaller image",
            "too_large",
        )
