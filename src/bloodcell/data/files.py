"""Which files to try, and reading one of them: the one walk over the user's files and folders
(`predict`, `explain`, the out-of-scope folders of `evaluate`), sorted, hidden names skipped,
every file through the one decoder (`data.decode`); and a shard of that walk (`Shard`), so that
a scheduler's array of jobs can split one archive between them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.errors import BloodcellError


@dataclass(frozen=True)
class Shard:
    """Part `index` (counted from 1) of `count` contiguous parts of the walk, as equal as can
    be: shard I of N holds files floor((I-1)*n/N) up to floor(I*n/N) of the n the walk finds.
    Contiguous, so that the shards' outputs put one after the other in shard order are the
    output of one process over everything, row for row."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise BloodcellError(f"shard {self}: the number of shards N must be at least 1")
        if not 1 <= self.index <= self.count:
            raise BloodcellError(
                f"shard {self}: the shard number I must be between 1 and N={self.count} "
                "(shards are counted from 1)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N`, e.g. `2/8` (a scheduler's array index gives I)."""
        index, sep, count = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(index), int(count))
        except ValueError:
            raise BloodcellError(
                f"shard {text!r}: write it as I/N, two whole numbers, e.g. 2/8 (shard 2 of 8)"
            ) from None

    def bounds(self, n: int) -> tuple[int, int]:
        """The [start, stop) positions of this shard among `n` files."""
        return (self.index - 1) * n // self.count, self.index * n // self.count

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def iter_image_paths(paths: Iterable[str | Path], shard: Shard | None = None) -> Iterator[Path]:
    """Files to try, lazily: given files as they are, folders walked recursively and sorted.

    A path that does not exist is yielded too, so that it becomes an error row. With `shard`,
    only that shard's files: the walk is made twice (once to count), so memory stays flat.
    """
    paths = list(paths)  # the arguments, not the files
    if shard is None:
        yield from _files(paths)
        return
    start, stop = shard.bounds(sum(1 for _ in _files(paths)))
    yield from itertools.islice(_files(paths), start, stop)


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
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
