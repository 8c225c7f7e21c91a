"""paths: lazy, sorted walking; hidden files skipped."""

from __future__ import annotations

from pathlib import Path

from bloodcell.predict.paths import iter_image_paths


def test_iter_is_lazy_and_sorted(mixed: Path) -> None:
    it = iter_image_paths([mixed])
    assert iter(it) is it  # a generator: folders are walked as batches are consumed
    paths = list(it)
    folders = list(dict.fromkeys(p.parent for p in paths))
    assert folders == sorted(folders)  # deterministic order, folder by folder
    for f in folders:
        names = [p.name for p in paths if p.parent == f]
        assert names == sorted(names)
    assert len(paths) == 15 and not any(p.name.startswith(".") for p in paths)
