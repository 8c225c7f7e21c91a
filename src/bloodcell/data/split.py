"""Split verified images into train/val/test, stratified by class and grouped against leakage.

Why grouped: copies of one image in two splits let a model "recognise" test images it was
trained on. Each group is a connected component of: exact duplicates (same sha256),
near-duplicates (perceptual hash, see `verify`), and, with ``block_size=N``, runs of
consecutive file numbers. Whole groups go to one split.

Why blocks: in this dataset neighbouring file numbers were taken one after another, mostly
from the same slide, and near-copies sit at distance 1-3. Without slide ids, putting numbers
``k*N .. k*N+N-1`` of one class folder in one block approximates a split by slide and keeps
unseen near-copies (below the hash threshold) from leaking. The price: coarser groups, so the
per-class ratios can only be met to within about one block.

Assignment: integer per-class targets by largest remainder (within one image of
``n * ratio``); groups are placed largest first (ties in a seeded random order), each into the
split where it overflows the targets least, then where the most of its target is still
missing. Singleton groups can therefore always fill the remaining gaps exactly, so with only
small groups every class hits its targets.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from bloodcell.data.manifest import SPLITS, ManifestRow
from bloodcell.data.verify import FileRecord, VerifyReport, components
from bloodcell.errors import DatasetError
from bloodcell.labels import DISPLAY_NAMES, LABELS

DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
_TRAILING_DIGITS = re.compile(r"(\d+)$")


def file_number(path: str) -> int | None:
    """The trailing number of a file's stem ('WBC-Benign-042.jpg' -> 42), or None."""
    m = _TRAILING_DIGITS.search(PurePosixPath(path).stem)
    return int(m.group(1)) if m else None


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative ratios summing to 1 (train must be > 0), or a DatasetError."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise DatasetError(f"ratios {list(ratios)}: give three non-negative numbers train val test")
    if abs(sum(ratios) - 1) > 1e-6:
        raise DatasetError(f"ratios {list(ratios)} sum to {sum(ratios):g}; they must sum to 1")
    return (float(ratios[0]), float(ratios[1]), float(ratios[2]))


def integer_targets(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of n*ratios: each within one of n*ratio, summing to n."""
    exact = [n * r for r in ratios]
    out = [int(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda k: (-(exact[k] - out[k]), k))
    for k in order[: n - sum(out)]:
        out[k] += 1
    return out


def _pairs(
    records: list[FileRecord], report: VerifyReport, block_size: int | None, near: bool = True
):
    """Edges linking records that must share a split: duplicates and (optionally) blocks."""
    index = {r.path: k for k, r in enumerate(records)}
    duplicates = report.exact_duplicate_groups + (report.near_duplicate_groups if near else [])
    for g in duplicates:
        ks = [index[p] for p in g if p in index]
        yield from ((ks[0], k) for k in ks[1:])
    if block_size:
        blocks: dict[tuple, list[int]] = defaultdict(list)
        for k, r in enumerate(records):
            num = file_number(r.path)
            if num is not None:
                blocks[(r.label, str(PurePosixPath(r.path).parent), num // block_size)].append(k)
        for ks in blocks.values():
            yield from ((ks[0], k) for k in ks[1:])


def make_groups(
    report: VerifyReport, block_size: int | None = None, near: bool = True
) -> list[list[FileRecord]]:
    """All records partitioned into groups (sorted by first path); singletons included.

    `near=False` joins only byte-identical copies, not near-duplicates.
    """
    if block_size is not None and block_size < 1:
        raise DatasetError(f"--block-size {block_size}: give a whole number >= 1, or leave it out")
    records = sorted(report.records, key=lambda r: r.path)
    joined = components(len(records), _pairs(records, report, block_size, near))
    in_group = {k for comp in joined for k in comp}
    groups = [[records[k] for k in comp] for comp in joined]
    groups += [[r] for k, r in enumerate(records) if k not in in_group]
    return sorted(groups, key=lambda g: g[0].path)


def _choose(
    group_counts: Counter, filled: dict, targets: dict, rng: random.Random, n_parts: int
) -> int:
    """Index of the part that overflows its targets least, then lacks the most."""

    def score(s: int) -> tuple[float, float, float]:
        overflow = sum(max(0, filled[c][s] + n - targets[c][s]) for c, n in group_counts.items())
        lack = sum(
            n * (targets[c][s] - filled[c][s]) / max(targets[c][s], 1)
            for c, n in group_counts.items()
        )
        return (overflow, -lack, rng.random())

    return min(range(n_parts), key=score)


def assign_groups(
    groups: Sequence[Sequence[FileRecord]], ratios: Sequence[float], seed: int
) -> list[int]:
    """The part (index into `ratios`) of each group: whole groups only, each class's images
    shared out by `ratios` (largest groups first, see the module's docstring).

    `make_split` uses it with three parts (train, val, test); cross-validation with K equal
    parts (folds), and again with two (train, val) inside each fold's training part.
    """
    totals = Counter(r.label for g in groups for r in g)
    targets = {c: integer_targets(totals[c], ratios) for c in LABELS}
    filled = {c: [0] * len(ratios) for c in LABELS}
    rng = random.Random(seed)
    order = list(range(len(groups)))
    rng.shuffle(order)
    order.sort(key=lambda k: -len(groups[k]))  # stable: equal sizes keep the seeded order
    parts = [0] * len(groups)
    for k in order:
        counts = Counter(r.label for r in groups[k])
        s = _choose(counts, filled, targets, rng, len(ratios))
        for c, n in counts.items():
            filled[c][s] += n
        parts[k] = s
    return parts


def group_id(k: int) -> str:
    """The manifest's name for the k-th group (0-based) of `make_groups`' list."""
    return f"g{k + 1:05d}"


def make_split(
    report: VerifyReport,
    seed: int = 0,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    block_size: int | None = None,
) -> list[ManifestRow]:
    """Manifest rows (sorted by path) for every readable image; unreadable ones are left out."""
    ratios = check_ratios(ratios)
    if not report.usable:
        raise DatasetError(f"{report.root}: " + "; ".join(report.problems))
    groups = make_groups(report, block_size)
    parts = assign_groups(groups, ratios, seed)
    rows = [
        ManifestRow(r.path, r.label, SPLITS[s], r.sha256, group_id(k))
        for k, (g, s) in enumerate(zip(groups, parts, strict=True))
        for r in g
    ]
    return sorted(rows)


def split_counts(rows: Iterable[ManifestRow]) -> dict[str, dict[str, int]]:
    """split -> label -> number of images, with every split and label present."""
    out = {s: dict.fromkeys(LABELS, 0) for s in SPLITS}
    for r in rows:
        out[r.split][r.label] += 1
    return out


def format_counts(rows: Iterable[ManifestRow]) -> str:
    """A table of images per class (rows) and split (columns), with totals."""
    counts = split_counts(rows)
    head = f"{'class':<24}" + "".join(f"{s:>8}" for s in SPLITS) + f"{'total':>8}"
    lines = [head]
    for c in LABELS:
        per = [counts[s][c] for s in SPLITS]
        lines.append(f"{DISPLAY_NAMES[c]:<24}" + "".join(f"{n:>8}" for n in per) + f"{sum(per):>8}")
    tot = [sum(counts[s].values()) for s in SPLITS]
    lines.append(f"{'total':<24}" + "".join(f"{n:>8}" for n in tot) + f"{sum(tot):>8}")
    return "\n".join(lines)
