"""Pictures of the data: sample images per class (train and test), class counts per split,
and contact sheets of the white cells the finder marks.

Why: a look at the images catches a wrong folder or label early; the bar chart shows at a
glance whether every split holds every class in proportion; the contact sheets show by eye
that the white-cell finder covers white cells and nothing else.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bloodcell.data.cells import CellFinder  # noqa: E402
from bloodcell.data.decode import ImageDecodeError, decode_image  # noqa: E402
from bloodcell.data.discover import discover, is_image_name  # noqa: E402
from bloodcell.data.manifest import SPLITS, ManifestRow  # noqa: E402
from bloodcell.data.split import split_counts  # noqa: E402
from bloodcell.errors import DatasetError  # noqa: E402
from bloodcell.labels import DISPLAY_NAMES, LABELS  # noqa: E402

GRID_SPLITS: tuple[str, ...] = ("train", "test")


def _pick(rows: Sequence[ManifestRow], split: str, label: str, k: int, seed: int) -> list[str]:
    paths = sorted(r.path for r in rows if r.split == split and r.label == label)
    return sorted(random.Random(f"{seed}-{split}-{label}").sample(paths, min(k, len(paths))))


def _open(data_root: Path, path: str) -> Image.Image:
    full = data_root / path
    try:
        return decode_image(full)
    except ImageDecodeError as exc:
        raise DatasetError(
            f"cannot open {full} listed in the manifest ({exc.reason}); check that --data "
            "points at the folder the manifest was made from, or rerun `bloodcell data split`"
        ) from exc


def sample_grid(
    rows: Sequence[ManifestRow], data_root: Path, split: str, out: Path, per_class: int, seed: int
) -> Path:
    """One row of `per_class` random images per class, each row titled with its display name."""
    fig, axes = plt.subplots(
        len(LABELS), per_class, figsize=(1.6 * per_class, 1.9 * len(LABELS)), squeeze=False
    )
    for i, label in enumerate(LABELS):
        paths = _pick(rows, split, label, per_class, seed)
        for j, ax in enumerate(axes[i]):
            ax.axis("off")
            if j < len(paths):
                ax.imshow(_open(data_root, paths[j]))
        axes[i][0].set_title(
            f"{DISPLAY_NAMES[label]} ({len(paths)} shown)", loc="left", fontsize=10
        )
    fig.suptitle(f"{split} split: sample images per class")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def counts_chart(rows: Sequence[ManifestRow], out: Path) -> Path:
    """Grouped bar chart: images per class, one bar per split, with the numbers on the bars."""
    counts = split_counts(rows)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(SPLITS)
    for k, split in enumerate(SPLITS):
        xs = [i + (k - 1) * width for i in range(len(LABELS))]
        bars = ax.bar(xs, [counts[split][c] for c in LABELS], width, label=split)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(LABELS)), [DISPLAY_NAMES[c] for c in LABELS])
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_figures(
    rows: Sequence[ManifestRow],
    data_root: Path | str,
    out_dir: Path | str,
    per_class: int = 8,
    seed: int = 0,
) -> list[Path]:
    """Write samples_train.png, samples_test.png and class_counts.png; return their paths."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    if not rows:
        raise DatasetError("the manifest has no rows; make one with `bloodcell data split`")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        sample_grid(rows, data_root, s, out_dir / f"samples_{s}.png", per_class, seed)
        for s in GRID_SPLITS
    ]
    paths.append(counts_chart(rows, out_dir / "class_counts.png"))
    return paths


def contact_sheet(
    images: list[tuple[str, Image.Image]],
    out: Path,
    finder: CellFinder | None = None,
    cols: int = 6,
) -> Path:
    """A PNG of the images with the cell mask outlined in green and "name: N cells" above each:
    the way to check by eye that the finder covers white cells and nothing else."""
    from skimage.segmentation import find_boundaries

    if not images:
        raise ValueError("contact_sheet needs at least one image")
    finder = finder or CellFinder()
    out = Path(out)
    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), images, strict=False):
        rgb = np.array(img.convert("RGB"))
        cells = finder.find(rgb)
        rgb[find_boundaries(cells.mask, mode="inner")] = (0, 255, 0)
        ax.imshow(rgb)
        ax.set_title(f"{name}: {cells.count} cells", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_contact_sheets(
    data_root: Path,
    out_dir: Path,
    per_class: int = 12,
    seed: int = 0,
    finder: CellFinder | None = None,
) -> list[Path]:
    """One contact sheet per class (`cells_<label>.png`) of `per_class` random images of the
    dataset at `data_root` (any layout `discover` reads), seeded for repeatability. A file that
    cannot be decoded is reported on stderr and left out."""
    index = discover(data_root)
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for label in LABELS:
        files = sorted(s.path for s in index.samples if s.label == label and is_image_name(s.path))
        if not files:
            raise DatasetError(f"no images of class {label} under {data_root}")
        pick = sorted(random.Random(f"{seed}-{label}").sample(files, min(per_class, len(files))))
        images = []
        for p in pick:
            try:
                images.append((Path(p).stem, decode_image(index.root / p)))
            except ImageDecodeError as exc:
                print(f"left out (unreadable): {exc}", file=sys.stderr)
        paths.append(contact_sheet(images, out_dir / f"cells_{label}.png", finder))
    return paths
