"""show: PNG figures from a manifest, and contact sheets of the white cells found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import make_dataset
from tests.data.test_cells import RED_AT, field, smear

from bloodcell.data.discover import discover
from bloodcell.data.show import contact_sheet, write_contact_sheets, write_figures
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


def test_contact_sheet_writes_a_png(tmp_path: Path) -> None:
    images = [("two", field()), ("none", smear(red=RED_AT)), ("odd", field(size=(150, 190)))]
    out = contact_sheet(images, tmp_path / "sheets" / "s.png", cols=2)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 300
        rgb = np.asarray(im.convert("RGB"))
    # the green mask outlines are drawn
    assert ((rgb[..., 1] > 200) & (rgb[..., 0] < 60) & (rgb[..., 2] < 60)).sum() > 50
    with pytest.raises(ValueError):
        contact_sheet([], tmp_path / "empty.png")


def test_write_contact_sheets_one_per_class(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", "mehradaria", n_per_class=3)
    paths = write_contact_sheets(root, tmp_path / "out", per_class=2, seed=1)
    assert [p.name for p in paths] == [
        "cells_benign.png",
        "cells_early_pre_b.png",
        "cells_pre_b.png",
        "cells_pro_b.png",
    ]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
