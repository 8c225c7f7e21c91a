"""What a run trains and validates on: the manifest's train/val images with the run's
preprocessing (its stain normaliser fitted once), and seeded corrupted copies of the train split
for cached training, mixed per epoch by `MixedCopies`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from bloodcell.data.corruptions import RandomCorruption
from bloodcell.data.dataset import Augment, ManifestDataset
from bloodcell.data.decode import ImageDecodeError, decode_image
from bloodcell.data.manifest import ManifestRow, select
from bloodcell.data.preprocess import Preprocess
from bloodcell.data.stain import StainNormalizer
from bloodcell.errors import DatasetError
from bloodcell.train.config import TrainConfig
from bloodcell.train.outliers import OutlierDataset


def no_rows(split: str) -> DatasetError:
    return DatasetError(
        f"the manifest has no {split} rows; recreate it with `bloodcell data split`"
    )


def fit_stain(
    config: TrainConfig, rows: Sequence[ManifestRow], data_root: Path
) -> StainNormalizer | None:
    """The run's stain normaliser (None without `stain_norm`), fitted once on `stain_target`,
    or on the first train image in path order (resolved against `data_root`)."""
    if config.stain_norm == "none":
        return None
    if config.stain_target:
        target = Path(config.stain_target).expanduser()
    else:
        train_rows = select(list(rows), "train")
        if not train_rows:
            raise no_rows("train")
        target = data_root / min(r.path for r in train_rows)
    try:
        image = decode_image(target)
    except ImageDecodeError as exc:
        raise DatasetError(
            f"stain target {target}: cannot read it as an image ({exc.reason}); "
            "give a readable reference image with --stain-target FILE"
        ) from exc
    try:
        return StainNormalizer.fit(image, config.stain_norm)
    except ValueError as exc:
        raise DatasetError(
            f"stain target {target}: {exc}; give a typical stained smear with --stain-target FILE"
        ) from exc


def split_datasets(
    config: TrainConfig, rows: list, data_root: Path, workers: int, pre: Preprocess
) -> tuple[Dataset, Dataset]:
    """The train and val images (augmented train images with `config.augment`)."""
    train_rows, val_rows = select(rows, "train"), select(rows, "val")
    for split, r in (("train", train_rows), ("val", val_rows)):
        if not r:
            raise no_rows(split)
    train_tf = Augment().transform(pre) if config.augment else pre.transform()
    cache = workers == 0  # a per-worker cache would be copied into every worker process
    return (
        ManifestDataset(train_rows, data_root, train_tf, cache=cache),
        ManifestDataset(val_rows, data_root, pre.transform(), cache=cache),
    )


def corrupt_seed(config: TrainConfig, copy: int) -> int:
    """The seed of corrupted copy number `copy` (0-based) of a run's train split."""
    return config.seed * 1000 + copy


def corrupted_dataset(
    dataset: ManifestDataset | OutlierDataset,
    config: TrainConfig,
    seed: int,
    pre: Preprocess | None = None,
) -> CorruptedCopy:
    """The same images, each under one random corruption (deterministic for `seed` and the
    image's index), then the run's preprocessing `pre` (default `config.preprocess()`): stain
    normalisation, if any, sees the corrupted image, as it would see another lab's."""
    from bloodcell.data.corruptions import RandomCorruption

    corrupt = RandomCorruption(p=1.0, max_severity=config.corrupt_severity, seed=seed)
    # Exposure varies most between microscopes, and clipped highlights cannot be normalised
    # away, so every corrupted image also gets a random brightness change.
    light = RandomCorruption(
        p=1.0,
        names=("darken", "brighten"),
        max_severity=config.exposure_severity,
        seed=seed + 1_000_003,
    )
    steps = [corrupt, light]
    if config.focus_severity:
        # Focus is the other thing that differs between every two slides; a 14-block frozen
        # stem cannot learn to ignore it, so the trainable blocks must see it often.
        focus = RandomCorruption(
            p=1.0, names=("blur",), max_severity=config.focus_severity, seed=seed + 2_000_003
        )
        steps.insert(0, focus)
    return CorruptedCopy(dataset, steps, (pre or config.preprocess()).transform())


class CorruptedCopy(Dataset):
    """A dataset's decoded images, image `i` under `corruptions` drawn from (seed, i), then
    `transform`: the same tensors whatever the order, thread or worker process that makes
    them, so that several threads can make a copy (`features.compute_features`)."""

    def __init__(
        self,
        images: ManifestDataset | OutlierDataset,
        corruptions: Sequence[RandomCorruption],
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        self.images = images
        self.corruptions = list(corruptions)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images.image(i)
        for corruption in self.corruptions:
            img = corruption.at(img, i)
        return self.transform(img), self.images.targets[i]


class MixedCopies(Dataset):
    """Several versions of the same images (cached copies of the train split, or the outlier
    images clean and corrupted); each epoch takes every image from one copy drawn at random
    (seeded per epoch), so that each epoch costs one pass over the split however many copies
    were cached.

    Mixing within an epoch, rather than one whole copy per epoch, matters: with whole copies the
    best-on-clean-validation checkpoint tended to be an epoch trained on the clean copy, which
    had forgotten the corruptions (brightness x1.4: 67% on one seed).
    """

    def __init__(self, copies: Sequence[Dataset], seed: int = 0) -> None:
        self.copies = list(copies)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        self.choice = torch.randint(len(self.copies), (len(self),), generator=gen)

    def __len__(self) -> int:
        return len(self.copies[0])  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.copies[int(self.choice[i])][i]
