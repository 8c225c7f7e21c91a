"""Decode every file, count the classes, and find exact and near-duplicate images.

Why: the Kaggle B-ALL data holds byte-identical copies and near-copies (the same field of view,
shifted or re-encoded, usually under neighbouring file numbers). A random split puts copies of
test images into training, so `split` groups them; this module finds them.

Near-duplicates use a 64-bit perceptual hash (`imagehash.phash`, hash_size=8) and a Hamming
distance threshold, ``NEAR_THRESHOLD = 10`` bits. Measured on ../shared/data/leukemia (2804
images, ~3.9M pairs): apart from the 40 byte-identical pairs, 61 pairs lie at distance <= 10 and
every one inspected is the same field of view (most at neighbouring file numbers, a few far
apart); the next distances are empty or sparse (0:22, 2:21, 4:6, 6:5, 8:3, 10:4 pairs) and
at 12 (16 pairs) unrelated images start to appear, including pairs across classes, while the
bulk of unrelated pairs lies at 14 and above. So 10 catches the near-copies without merging
unrelated images; raise it to catch more at the cost of merging more.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.data.discover import IMAGE_EXTENSIONS, DatasetIndex, is_image_name
from bloodcell.labels import DISPLAY_NAMES, LABELS

#: Largest Hamming distance (of 64 bits) between perceptual hashes that counts as near-duplicate.
NEAR_THRESHOLD = 10
HASH_DESCRIPTION = "imagehash.phash (64-bit DCT hash, hash_size=8), Hamming distance"


@dataclass(frozen=True)
class FileRecord:
    """A readable image: where it is, its class, its content and perceptual hashes, its size."""

    path: str
    label: str
    sha256: str
    phash: str
    width: int
    height: int


@dataclass
class VerifyReport:
    """Everything `verify` learnt; `split` builds its groups from it."""

    root: Path
    layout: str
    records: list[FileRecord]
    unreadable: list[dict[str, str]]
    exact_duplicate_groups: list[list[str]]
    near_duplicate_groups: list[list[str]]
    near_threshold: int = NEAR_THRESHOLD
    segmented_root: Path | None = None
    labels_by_path: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Readable images per label, in LABELS order."""
        out = dict.fromkeys(LABELS, 0)
        for r in self.records:
            out[r.label] += 1
        return out

    @property
    def total(self) -> int:
        """Number of readable images."""
        return len(self.records)

    @property
    def problems(self) -> list[str]:
        """Reasons the data cannot be used (empty when it can)."""
        return [
            f"class {lab} ({DISPLAY_NAMES[lab]}) has no readable image"
            for lab, n in self.counts.items()
            if n == 0
        ]

    @property
    def usable(self) -> bool:
        """False only when the data cannot train a 4-class model: a class without images."""
        return not self.problems

    def cross_class_groups(self) -> list[list[str]]:
        """Duplicate groups (exact or near) whose files carry more than one label."""
        groups = self.exact_duplicate_groups + self.near_duplicate_groups
        return [g for g in groups if len({self.labels_by_path[p] for p in g}) > 1]

    def to_json(self) -> dict:
        """One JSON-ready object; paths are relative to `root`."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "segmented_root": str(self.segmented_root) if self.segmented_root else None,
            "counts": self.counts,
            "total": self.total,
            "files": self.total + len(self.unreadable),
            "unreadable": self.unreadable,
            "exact_duplicate_groups": self.exact_duplicate_groups,
            "near_duplicate_groups": self.near_duplicate_groups,
            "cross_class_duplicate_groups": self.cross_class_groups(),
            "near_threshold": self.near_threshold,
            "near_hash": HASH_DESCRIPTION,
            "usable": self.usable,
            "problems": self.problems,
        }


def _check_file(root: Path, path: str, label: str) -> FileRecord | dict[str, str]:
    """Decode one file fully; return its record, or {path, reason} when it cannot be used."""
    full = root / path
    if not is_image_name(path):
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        return {"path": path, "reason": f"not an image file (extension not one of {exts})"}
    try:
        data = full.read_bytes()
    except OSError as exc:
        return {"path": path, "reason": f"cannot read file: {exc.strerror or exc}"}
    try:
        rgb = decode_image(data, path)  # from the bytes read once: they are hashed below
    except ImageDecodeError as exc:  # reported and left out; the check goes on
        return {"path": path, "reason": exc.reason}
    return FileRecord(
        path=path,
        label=label,
        sha256=hashlib.sha256(data).hexdigest(),
        phash=str(imagehash.phash(rgb)),
        width=rgb.width,
        height=rgb.height,
    )


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(-1)


def near_pairs(hashes: list[str], threshold: int, chunk: int = 1024) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose 64-bit hashes differ in at most `threshold` bits."""
    h = np.array([int(x, 16) for x in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(h), chunk):
        d = _popcount(h[start : start + chunk, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= threshold)
        ii = ii + start
        keep = jj > ii
        pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist(), strict=True))
    return pairs


def components(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2) of the graph on n nodes with these edges, sorted."""
    pairs = list(pairs)
    if not pairs:
        return []
    i, j = zip(*pairs, strict=True)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for node, c in enumerate(comp.tolist()):
        members[c].append(node)
    return sorted(m for m in members.values() if len(m) > 1)


def _exact_groups(records: list[FileRecord]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for r in records:
        by_hash[r.sha256].append(r.path)
    return sorted(sorted(g) for g in by_hash.values() if len(g) > 1)


def _near_groups(records: list[FileRecord], threshold: int) -> list[list[str]]:
    """Near-duplicate components, leaving out those made only of byte-identical copies."""
    comps = components(len(records), near_pairs([r.phash for r in records], threshold))
    groups = [
        sorted(records[k].path for k in comp)
        for comp in comps
        if len({records[k].sha256 for k in comp}) > 1
    ]
    return sorted(groups)


def verify(
    index: DatasetIndex,
    progress: bool = True,
    near_threshold: int = NEAR_THRESHOLD,
    workers: int | None = None,
) -> VerifyReport:
    """Decode every file of `index` (in threads: PIL and hashlib release the GIL) and report."""
    samples = index.samples
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(lambda s: _check_file(index.root, s.path, s.label), samples),
                total=len(samples),
                desc="verify",
                unit="img",
                file=sys.stderr,
                disable=not progress,
            )
        )
    records = [r for r in results if isinstance(r, FileRecord)]
    unreadable = [r for r in results if isinstance(r, dict)]
    return VerifyReport(
        root=index.root,
        layout=index.layout,
        records=records,
        unreadable=unreadable,
        exact_duplicate_groups=_exact_groups(records),
        near_duplicate_groups=_near_groups(records, near_threshold),
        near_threshold=near_threshold,
        segmented_root=index.segmented_root,
        labels_by_path={s.path: s.label for s in samples},
    )


def _group_lines(title: str, groups: list[list[str]], show: int) -> list[str]:
    files = sum(len(g) for g in groups)
    lines = [f"{title}: {len(groups)} group(s), {files} files"]
    for g in groups[:show]:
        lines.append("  " + ", ".join(g))
    if len(groups) > show:
        lines.append(f"  ... and {len(groups) - show} more (see --json)")
    return lines


def format_report(report: VerifyReport, show: int = 5) -> str:
    """A short human summary: counts, unreadable files, duplicates, and whether it is usable."""
    lines = [f"dataset: {report.root} (layout: {report.layout})"]
    for lab, n in report.counts.items():
        lines.append(f"  {DISPLAY_NAMES[lab]:<24} {lab:<12} {n:>6}")
    lines.append(f"  {'total readable':<37} {report.total:>6}")
    lines.append(f"unreadable: {len(report.unreadable)} file(s)")
    lines.extend(f"  {u['path']}: {u['reason']}" for u in report.unreadable)
    lines += _group_lines("exact duplicates (same bytes)", report.exact_duplicate_groups, show)
    lines += _group_lines(
        f"near duplicates (phash distance <= {report.near_threshold})",
        report.near_duplicate_groups,
        show,
    )
    cross = report.cross_class_groups()
    if cross:
        lines += _group_lines("WARNING duplicate groups spanning classes", cross, show)
    lines.append(
        "usable: yes (split keeps each duplicate group in one split)"
        if report.usable
        else "usable: NO - " + "; ".join(report.problems) + "; add images for it and rerun"
    )
    return "\n".join(lines)
