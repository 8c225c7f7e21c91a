"""Find the class folders and image files of a dataset, in any supported layout.

Layouts:
  * "mehradaria": ``Original/{Benign,Early,Pre,Pro}`` with an optional ``Segmented/`` beside it
    (only recorded: the cells cut out by the dataset authors, not used for training);
  * "4class": ``Blood cell Cancer [ALL]/{Benign,[Malignant] early Pre-B,...}``;
  * "folders": any folder-per-class tree whose names `labels.label_for_folder` understands.

Discovery lists files; it does not open them. Every regular, non-hidden file in a class folder
is a sample, so that `verify` can report a stray ``notes.txt`` instead of silently skipping it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bloodcell.errors import DatasetError
from bloodcell.labels import DISPLAY_NAMES, LABELS, label_for_folder

#: File extensions (lower-case) that count as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

MEHRADARIA_DIR = "Original"
SEGMENTED_DIR = "Segmented"
FOURCLASS_DIR = "Blood cell Cancer [ALL]"

#: Files that operating systems and archivers leave behind; never samples.
_JUNK = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


@dataclass(frozen=True, order=True)
class Sample:
    """One file: its POSIX path relative to the data root, and its canonical label."""

    path: str
    label: str


@dataclass
class DatasetIndex:
    """What discovery found: the layout, the class folders and every file in them."""

    root: Path
    layout: str
    samples: list[Sample]
    class_dirs: dict[str, Path] = field(default_factory=dict)
    segmented_root: Path | None = None

    def counts(self) -> dict[str, int]:
        """Number of files per label (readable or not), in LABELS order."""
        out = dict.fromkeys(LABELS, 0)
        for s in self.samples:
            out[s.label] += 1
        return out


def is_image_name(name: str) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name.lower() not in _JUNK


def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and _visible(p))


def _find_class_parent(root: Path) -> tuple[str, Path, Path | None]:
    """Return (layout, folder holding the class folders, Segmented folder or None)."""
    if (root / MEHRADARIA_DIR).is_dir():
        seg = root / SEGMENTED_DIR
        return "mehradaria", root / MEHRADARIA_DIR, seg if seg.is_dir() else None
    if root.name == MEHRADARIA_DIR:
        seg = root.parent / SEGMENTED_DIR
        return "mehradaria", root, seg if seg.is_dir() else None
    if (root / FOURCLASS_DIR).is_dir():
        return "4class", root / FOURCLASS_DIR, None
    if root.name == FOURCLASS_DIR:
        return "4class", root, None
    subdirs = _subdirs(root)
    # A download often wraps the class folders in one extra folder: look inside it.
    if len(subdirs) == 1 and label_for_folder(subdirs[0].name) is None:
        return _find_class_parent(subdirs[0])
    return "folders", root, None


def _hint() -> str:
    names = ", ".join(f"{lab} ({DISPLAY_NAMES[lab]})" for lab in LABELS)
    return (
        f"expected one folder per class: {names}; or the Kaggle layouts "
        f"'{MEHRADARIA_DIR}/{{Benign,Early,Pre,Pro}}' and '{FOURCLASS_DIR}/...'"
    )


def _class_dirs(parent: Path) -> dict[str, Path]:
    """Map each class folder under `parent` to its label, refusing unknown or doubled ones."""
    dirs = _subdirs(parent)
    if not dirs:
        raise DatasetError(f"no class folders in {parent}; {_hint()}")
    found: dict[str, Path] = {}
    for d in dirs:
        label = label_for_folder(d.name)
        if label is None:
            raise DatasetError(
                f"unknown class folder {d}: its name does not clearly mean one of the four "
                f"classes; rename or remove it ({_hint()})"
            )
        if label in found:
            raise DatasetError(
                f"two folders mean the same class {label!r}: {found[label]} and {d}; "
                "merge them or remove one"
            )
        found[label] = d
    missing = [lab for lab in LABELS if lab not in found]
    if missing:
        raise DatasetError(
            f"missing class folder(s) for {', '.join(missing)} in {parent}; {_hint()}"
        )
    return {lab: found[lab] for lab in LABELS}


def _files_under(d: Path) -> list[Path]:
    """Every visible regular file under `d`, recursively, skipping hidden folders."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = sorted(n for n in dirnames if _visible(Path(n)))
        out.extend(Path(dirpath) / n for n in filenames if _visible(Path(n)))
    return [p for p in out if p.is_file()]


def discover(root: Path | str) -> DatasetIndex:
    """Index the dataset at `root`; raise DatasetError naming the path and the fix."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(
            f"dataset folder not found: {root}; pass --data DIR (or set BLOODCELL_DATA) to the "
            "folder you downloaded, or run `bloodcell data download`"
        )
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}; pass the folder that holds it")
    layout, parent, segmented = _find_class_parent(root)
    class_dirs = _class_dirs(parent)
    samples: list[Sample] = []
    for label, d in class_dirs.items():
        files = _files_under(d)
        if not files:
            raise DatasetError(f"class folder {d} ({label}) is empty; add its images")
        if not any(is_image_name(f.name) for f in files):
            raise DatasetError(
                f"class folder {d} ({label}) holds no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add its images"
            )
        samples.extend(Sample(f.relative_to(root).as_posix(), label) for f in files)
    samples.sort()
    return DatasetIndex(root, layout, samples, class_dirs, segmented)
