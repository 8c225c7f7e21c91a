"""files: lazy, sorted walking; hidden files and folders skipped; a missing path is yielded (it
becomes an error row); reading reports the problem alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.errors import BloodcellError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("b/2.jpg", "b/10.jpg", "a/z.png", "a/sub/y.jpg", "top.txt", ".hidden.jpg",
                ".cache/x.jpg", "a/.dot.png"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def test_iter_is_lazy_and_sorted(tree: Path) -> None:
    it = iter_image_paths([tree])
    assert iter(it) is it  # a generator: folders are walked as batches are consumed
    got = [p.relative_to(tree).as_posix() for p in it]
    assert got == ["top.txt", "a/z.png", "a/sub/y.jpg", "b/10.jpg", "b/2.jpg"]


def test_files_and_missing_paths_are_yielded_as_given(tree: Path) -> None:
    given = [tree / "b" / "2.jpg", tree / "nope.jpg", tree / "a" / "sub"]
    assert list(iter_image_paths(given)) == [given[0], given[1], tree / "a" / "sub" / "y.jpg"]


def test_read_image_says_the_problem_without_the_path(tree: Path) -> None:
    with pytest.raises(BloodcellError) as err:
        read_image(tree / "top.txt")
    assert "not an image" in str(err.value) and str(tree) not in str(err.value)
