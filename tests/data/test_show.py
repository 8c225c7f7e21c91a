"""show: PNG figures from a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import make_dataset

from bloodcell.data.discover import discover
from bloodcell.data.show import write_figures
from bloodcell.data.split import make_split
from bloodcell.data.verify import verify
from bloodcell.errors import DatasetError


def test_write_figures(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "mehradaria", n_per_class=10)
    rows = make_split(verify(discover(root), progress=False))
    paths = write_figures(rows, root, tmp_path / "out", per_class=3)
    assert [p.name for p in paths] == ["samples_train.png", "samples_test.png", "class_counts.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100


def test_missing_image_names_path(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=10)
    rows = make_split(verify(discover(root), progress=False))
    with pytest.raises(DatasetError, match=r"cannot open .*elsewhere.*--data"):
        write_figures(rows, tmp_path / "elsewhere", tmp_path / "out")
