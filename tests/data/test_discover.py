"""Discovery of the three layouts, and its errors (each naming the path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.conftest import LAYOUT_FOLDERS, make_dataset

from bloodcell.data.discover import discover
from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS, label_for_folder


@pytest.mark.parametrize(
    ("layout", "expected"),
    [("mehradaria", "mehradaria"), ("4class", "4class"), ("generic", "folders")],
)
def test_layouts(tmp_path: Path, layout: str, expected: str) -> None:
    root = make_dataset(tmp_path / "d", layout, n_per_class=3)
    index = discover(root)
    assert index.layout == expected
    assert index.counts() == dict.fromkeys(LABELS, 3)
    paths = [s.path for s in index.samples]
    assert paths == sorted(paths)
    assert all((root / p).is_file() and not Path(p).is_absolute() for p in paths)
    assert all("\\" not in p for p in paths)


def test_layout_root_may_be_the_class_parent(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "4class", n_per_class=2)
    index = discover(root / "Blood cell Cancer [ALL]")
    assert index.layout == "4class" and index.samples[0].path.startswith("Benign/")
    root = make_dataset(tmp_path / "m", "mehradaria", n_per_class=2)
    assert discover(root / "Original").layout == "mehradaria"


def test_segmented_recorded_not_used(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "mehradaria", n_per_class=2)
    shutil.copytree(root / "Original", root / "Segmented")
    index = discover(root)
    assert index.segmented_root == root / "Segmented"
    assert all(s.path.startswith("Original/") for s in index.samples)
    assert discover(root / "Original").segmented_root == root / "Segmented"


def test_wrapper_folder_is_entered(tmp_path: Path) -> None:
    make_dataset(tmp_path / "d" / "dataset-v2", "generic", n_per_class=2)
    index = discover(tmp_path / "d")
    assert index.samples[0].path.startswith("dataset-v2/benign/")


def test_hidden_skipped_other_files_listed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=2)
    (root / "benign" / ".DS_Store").write_bytes(b"x")
    (root / "benign" / "notes.txt").write_text("hello")
    (root / "benign" / "UPPER.JPG").write_bytes((root / "benign" / "benign-000.jpg").read_bytes())
    paths = [s.path for s in discover(root).samples if s.label == "benign"]
    assert "benign/notes.txt" in paths and "benign/UPPER.JPG" in paths
    assert not any(".DS_Store" in p for p in paths)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found.*--data"):
        discover(tmp_path / "nope")


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        discover(tmp_path / "f")


def test_unknown_class_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=1)
    (root / "lymphoma").mkdir()
    with pytest.raises(DatasetError, match=r"unknown class folder .*lymphoma.*rename or remove"):
        discover(root)


def test_missing_class(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "mehradaria", n_per_class=1)
    shutil.rmtree(root / "Original" / "Pre")
    with pytest.raises(DatasetError, match=r"missing class folder.*pre_b.*Original"):
        discover(root)


def test_empty_class(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=1)
    for f in (root / "pro_b").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"pro_b.*empty"):
        discover(root)


def test_class_without_images(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=1)
    for f in (root / "pre_b").iterdir():
        f.unlink()
    (root / "pre_b" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"pre_b.*no images"):
        discover(root)


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no class folders"):
        discover(tmp_path / "d")


def test_duplicate_class_folders(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", "generic", n_per_class=1)
    shutil.copytree(root / "benign", root / "Benign ")
    with pytest.raises(DatasetError, match="same class"):
        discover(root)


@pytest.mark.parametrize("layout", sorted(LAYOUT_FOLDERS))
def test_label_for_known_folders(layout: str) -> None:
    names = [f.rsplit("/", 1)[-1] for f in LAYOUT_FOLDERS[layout]]
    assert [label_for_folder(n) for n in names] == list(LABELS)
