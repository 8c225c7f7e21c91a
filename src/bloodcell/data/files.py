"""Which files to try, and reading one of them: the one walk over the user's files and folders
(`predict`, `explain`, the out-of-scope folders of `evaluate`), sorted, hidden names skipped,
every file through the one decoder (`data.decode`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.errors import BloodcellError


def iter_image_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to try, lazily: given files as they are, folders walked recursively and sorted.

    A path that does not exist is yielded too, so that it becomes an error row.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from _walk(p)
        else:
            yield p


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def read_image(path: str | Path) -> Image.Image:
    """Decode a file with the shared decoder; the error says only the problem, because every
    caller shows the path next to it (an error row, `explain`'s list)."""
    try:
        return decode_image(path)
    except ImageDecodeError as exc:
        raise BloodcellError(exc.reason) from None
