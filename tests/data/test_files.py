"""files: lazy, sorted walking; hidden files and folders skipped; a missing path is yielded (it
becomes an error row); reading reports the problem alone; shards of the walk join into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloodcell.data.files import Shard, iter_image_paths, read_image
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


def test_shards_are_contiguous_parts_that_join_into_the_walk(tree: Path) -> None:
    walk = list(iter_image_paths([tree]))
    for count in (1, 2, 3, 5, 7):
        parts = [list(iter_image_paths([tree], Shard(i, count))) for i in range(1, count + 1)]
        assert [p for part in parts for p in part] == walk  # shard order = the walk's order
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert list(iter_image_paths([tree], Shard(1, 7))) == []  # more shards than files
    assert Shard(3, 4).bounds(10) == (5, 7) and Shard(4, 4).bounds(10) == (7, 10)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0/4", "between 1 and N=4 .*counted from 1"),
        ("5/4", "between 1 and N=4"),
        ("1/0", "at least 1"),
        ("2", "write it as I/N"),
        ("2-4", "write it as I/N"),
        ("a/4", "write it as I/N"),
        ("1.5/4", "write it as I/N"),
    ],
)
def test_a_bad_shard_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(BloodcellError, match=problem):
        Shard.parse(text)


def test_shard_parses_and_prints_as_given() -> None:
    assert Shard.parse(" 2/8 ") == Shard(2, 8) and str(Shard(2, 8)) == "2/8"
