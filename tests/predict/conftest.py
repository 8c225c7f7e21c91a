"""Fixtures for the predict tests: the tiny model's backend and a folder of good and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import make_dataset
from tests.models import IMAGE_SIZE, tiny_model_dir

from bloodcell.models.engines import open_model


@pytest.fixture(scope="module")
def backend():
    return open_model(tiny_model_dir())


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Two 'slides' of good images plus a corrupt JPEG, a 0-byte file and a text file."""
    root = tmp_path / "smears"
    make_dataset(root / "slide1", "generic", n_per_class=2, size=IMAGE_SIZE)
    make_dataset(root / "slide2", "generic", n_per_class=1, size=IMAGE_SIZE)
    good = (root / "slide1" / "benign" / "benign-000.jpg").read_bytes()
    (root / "slide1" / "benign" / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (root / "slide2" / "pre_b" / "empty.jpg").write_bytes(b"")
    (root / "slide2" / "notes.txt").write_text("not an image\n")
    (root / ".hidden.jpg").write_bytes(b"skipped")
    return root
