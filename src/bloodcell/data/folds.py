"""K-fold cross-validation folds, grouped and stratified the way `split` is.

Why: one test split of a few hundred images gives an accuracy whose 95% interval is about one
point wide. K-fold tests every image once, so the estimate covers the whole dataset. Leakage
matters as much as in a single split, so whole groups (`make_groups`, with the grouping chosen
here) go to one fold, each class shared out equally (`assign_groups` with K equal parts).
Each fold's validation part is taken from its training folds the same grouped, stratified way.

Groupings, from none to strictest:
  * "image": every image alone, the random image-level split of published work (leaky);
  * "exact": byte-identical copies (sha256) kept together;
  * "near": exact and near-duplicates (perceptual hash) kept together, as `data split` does;
  * "block": also runs of ``block_size`` consecutive file numbers of a class folder, an
    approximation of a split by slide;
  * "run": the same with runs of about one patient's images (``DEFAULT_RUN_SIZE``, a few
    dozen): whole runs of neighbouring slides are tested unseen, the figure to expect on a
    new patient's slides.
"""

from __future__ import annotations

from bloodcell.data.manifest import ManifestRow
from bloodcell.data.split import assign_groups, group_id, make_groups
from bloodcell.data.verify import FileRecord, VerifyReport
from bloodcell.errors import DatasetError
from bloodcell.labels import LABELS

GROUPINGS: tuple[str, ...] = ("image", "exact", "near", "block", "run")
DEFAULT_GROUPING = "near"
#: Block size for "block" when none is given: near-copies in this dataset sit 1-3 numbers apart.
DEFAULT_BLOCK_SIZE = 10
#: Run size for "run" when none is given: about one patient's images in this dataset (its
#: 3,256 images come from 89 patients, 37 a patient).
DEFAULT_RUN_SIZE = 40
#: How many blocks a run of the leakage study's protocol (d) is (40 = 4 x 10 by default).
RUN_BLOCKS = DEFAULT_RUN_SIZE // DEFAULT_BLOCK_SIZE
#: The groupings made of runs of consecutive file numbers, and their default lengths.
RUN_GROUPINGS = {"block": DEFAULT_BLOCK_SIZE, "run": DEFAULT_RUN_SIZE}
#: Share of each fold's training part (images per class) kept back for validation.
DEFAULT_VAL_FRACTION = 0.1


def check_grouping(grouping: str, block_size: int | None) -> int | None:
    """The length of the runs of file numbers that `grouping` keeps together (None unless
    "block" or "run"), or a DatasetError."""
    if grouping not in GROUPINGS:
        raise DatasetError(f"--group {grouping!r}: choose one of {', '.join(GROUPINGS)}")
    if grouping not in RUN_GROUPINGS:
        if block_size is not None:
            raise DatasetError(
                f"--block-size {block_size} needs --group block or run (not {grouping})"
            )
        return None
    block_size = RUN_GROUPINGS[grouping] if block_size is None else block_size
    if block_size < 1:
        raise DatasetError(f"--block-size {block_size}: give a whole number >= 1")
    return block_size


def cv_groups(
    report: VerifyReport, grouping: str = DEFAULT_GROUPING, block_size: int | None = None
) -> list[list[FileRecord]]:
    """Every readable record in groups that must stay in one fold (sorted by first path)."""
    block_size = check_grouping(grouping, block_size)
    if grouping == "image":
        return [[r] for r in sorted(report.records, key=lambda r: r.path)]
    return make_groups(report, block_size, near=grouping != "exact")


def _check_sizes(groups: list[list[FileRecord]], k: int, val_fraction: float) -> None:
    if k < 2:
        raise DatasetError(f"--folds {k}: give at least 2 folds")
    if not 0 < val_fraction < 1:
        raise DatasetError(f"--val-fraction {val_fraction:g}: give a number between 0 and 1")
    if len(groups) < k:
        raise DatasetError(
            f"only {len(groups)} group(s) of images for {k} folds; use fewer --folds "
            "or a finer --group"
        )
    counts = dict.fromkeys(LABELS, 0)
    for g in groups:
        for r in g:
            counts[r.label] += 1
    few = {lab: n for lab, n in counts.items() if n < k}
    if few:
        raise DatasetError(
            f"class(es) with fewer images than --folds {k}: {few}; every fold needs each class"
        )


def fold_of_groups(groups: list[list[FileRecord]], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each group: K equal parts of every class, whole groups only."""
    return assign_groups(groups, [1 / k] * k, seed)


def fold_rows(
    groups: list[list[FileRecord]],
    folds: list[int],
    fold: int,
    seed: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> list[ManifestRow]:
    """Manifest rows for one fold: its groups are the test split; the other folds' groups are
    shared into train and val by `val_fraction`, grouped and stratified as well."""
    rest = [k for k, f in enumerate(folds) if f != fold]
    # Its own seed per fold, so that one fold's validation part does not mirror another's.
    val_part = assign_groups(
        [groups[k] for k in rest], (1 - val_fraction, val_fraction), seed * 1000 + fold + 1
    )
    split = {k: ("train", "val")[p] for k, p in zip(rest, val_part, strict=True)}
    return sorted(
        ManifestRow(r.path, r.label, split.get(k, "test"), r.sha256, group_id(k))
        for k, g in enumerate(groups)
        for r in g
    )


def make_folds(
    report: VerifyReport,
    k: int,
    seed: int = 0,
    grouping: str = DEFAULT_GROUPING,
    block_size: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> list[list[ManifestRow]]:
    """One manifest (rows sorted by path) per fold; every readable image is in exactly one
    fold's test split. The same report, settings and seed give the same rows."""
    if not report.usable:
        raise DatasetError(f"{report.root}: " + "; ".join(report.problems))
    groups = cv_groups(report, grouping, block_size)
    _check_sizes(groups, k, val_fraction)
    folds = fold_of_groups(groups, k, seed)
    manifests = [fold_rows(groups, folds, i, seed, val_fraction) for i in range(k)]
    for i, rows in enumerate(manifests):
        if not any(r.split == "val" for r in rows):
            n = sum(r.split == "train" for r in rows)
            raise DatasetError(
                f"fold {i + 1}: --val-fraction {val_fraction:g} of its {n} training images "
                "leaves no validation image; raise --val-fraction or use fewer --folds"
            )
    return manifests
