"""The split manifest: one CSV row per image, the single record of which image is in which split.

Training, evaluation and reports read only this file, so its sha256 identifies the data a
model was trained on.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True, order=True)
class ManifestRow:
    """One image: its path relative to the data root, label, split, content hash and group."""

    path: str
    label: str
    split: str
    sha256: str
    group: str


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> Path:
    """Write rows sorted by path, with Unix newlines, so equal inputs give identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in sorted(rows):
            writer.writerow(astuple(row))
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read and check a manifest; errors name the file, the line and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"manifest not found: {path} (create one with `bloodcell data split --out {path}`)"
        )
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: missing column(s) {sorted(missing)}; expected {COLUMNS}")
        rows = []
        for lineno, rec in enumerate(reader, start=2):
            row = ManifestRow(**{c: rec[c] for c in COLUMNS})
            if row.label not in LABELS:
                raise DatasetError(
                    f"{path}:{lineno}: unknown label {row.label!r}; expected {LABELS}"
                )
            if row.split not in SPLITS:
                raise DatasetError(
                    f"{path}:{lineno}: unknown split {row.split!r}; expected {SPLITS}"
                )
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: the manifest has no rows")
    return rows


def select(rows: Iterable[ManifestRow], split: str) -> list[ManifestRow]:
    """Rows of one split, in manifest order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [r for r in rows if r.split == split]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, to record which manifest (or weights file) a model used."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
