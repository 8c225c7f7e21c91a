"""The train and val DataLoaders of a run: over images, or over the frozen stem's outputs
computed once (with corrupted copies of the train split, and what the out-of-scope detector
needs recorded on the way)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from bloodcell.data.dataset import ManifestDataset
from bloodcell.data.preprocess import Preprocess
from bloodcell.models.scope_fit import VAL, ScopeRecorder
from bloodcell.train.config import TrainConfig
from bloodcell.train.datasets import MixedCopies, corrupt_seed, corrupted_dataset, split_datasets
from bloodcell.train.devices import ValShardSampler, local_device, resolve_device, resolve_workers
from bloodcell.train.features import compute_features, frozen_stem, stem_blocks
from bloodcell.train.module import BloodcellModule
from bloodcell.train.outliers import OutlierDataset, outlier_files


def loaders(
    config: TrainConfig,
    module: BloodcellModule,
    data_root: Path,
    rows: list,
    progress: bool,
    pre: Preprocess,
) -> tuple[DataLoader, DataLoader, float, ScopeRecorder | None]:
    """Train/val loaders (cached stem outputs when `module.start` is set), the caching time, and
    what the out-of-scope detector needs from the caching (None when nothing is cached)."""
    workers = resolve_workers(config.workers)
    train_ds, val_ds = split_datasets(config, rows, data_root, workers, pre)
    outliers = outlier_dataset(config, pre)
    t0 = time.perf_counter()
    scope = None
    if module.start is not None:
        train_ds, val_ds, scope = cached_datasets(
            config, module, train_ds, val_ds, workers, progress, pre, outliers
        )
        workers = 0  # the cached outputs are in memory already
    elif outliers is not None:
        train_ds = ConcatDataset([train_ds, outliers])
    cache_s = time.perf_counter() - t0
    train_dl, val_dl = data_loaders(config, train_ds, val_ds, workers)
    return train_dl, val_dl, cache_s, scope


def cached_datasets(
    config: TrainConfig,
    module: BloodcellModule,
    train_ds: Dataset,
    val_ds: Dataset,
    workers: int,
    progress: bool,
    pre: Preprocess,
    outliers: OutlierDataset | None = None,
) -> tuple[Dataset, TensorDataset, ScopeRecorder | None]:
    """The frozen stem's outputs for the train split (mixed with its corrupted copies, if any,
    and followed by the outlier images and their copies) and the val split, and the
    detector's recordings (None without `ood_acceptance`)."""
    device = local_device(resolve_device(config.device))  # each DDP rank caches it all
    assert module.start is not None  # only a run that caches calls this
    stem = frozen_stem(module.model, module.start)
    scope = None
    if config.ood_acceptance is not None:
        scope = ScopeRecorder(stem_blocks(stem), len(module.model.backbone), module.start)
    compute = partial(
        compute_features,
        stem,
        device=device,
        batch_size=max(config.batch_size, 64),
        workers=workers,
        progress=progress,
        channels_last=config.channels_last,
    )
    copies = [_cache(compute, scope, train_ds, "train", "features train")]
    # The detector's reference needs one corrupted copy even when training uses none.
    for i in range(max(config.corrupt_copies, 0 if scope is None else 1)):
        assert isinstance(train_ds, ManifestDataset)  # split_datasets' images
        corrupted = corrupted_dataset(train_ds, config, seed=corrupt_seed(config, i), pre=pre)
        desc = f"features train, corrupted copy {i + 1}"
        features = _cache(compute, scope, corrupted, f"corrupted {i + 1}", desc)
        if i < config.corrupt_copies:
            copies.append(features)
    train: Dataset = copies[0] if len(copies) == 1 else MixedCopies(copies, config.seed)
    if outliers is not None:  # not part of the detector's reference: computed without it
        # One pass: each outlier image clean or under one corrupted copy's draws, chosen at
        # random, not every copy of every image. Their variety comes from their number (many
        # cells of many types); one pass instead of three saved a quarter of the caching and
        # gave the same model within a seed's noise (BENCHMARKS.md, "Fast again").
        views: list[Dataset] = [outliers]
        for i in range(config.corrupt_copies):
            seed = corrupt_seed(config, i) + OUTLIER_SEEDS
            views.append(corrupted_dataset(outliers, config, seed=seed, pre=pre))
        mixed = views[0] if len(views) == 1 else MixedCopies(views, config.seed + 1)
        train = ConcatDataset([train, compute(mixed, desc="features outliers")])
    return train, _cache(compute, scope, val_ds, VAL, "features val"), scope


#: Added to a corrupted copy's seed for the outliers' copy: other draws than the train split's.
OUTLIER_SEEDS = 500


def outlier_dataset(config: TrainConfig, pre: Preprocess) -> OutlierDataset | None:
    """The trained-on share of the outlier folders under the run's preprocessing (None
    without outliers)."""
    if not config.outliers:
        return None
    trained, _ = outlier_files(config.outliers, config.outlier_share)
    dataset = OutlierDataset(trained, pre.transform())
    return dataset if len(dataset) else None


def _cache(
    compute: Callable[..., TensorDataset],
    scope: ScopeRecorder | None,
    dataset: Dataset,
    name: str,
    desc: str,
) -> TensorDataset:
    """`compute` over `dataset`, recorded for the detector under `name` when there is one."""
    if scope is None:
        return compute(dataset, desc=desc)
    with scope.recording(name):
        return scope.keep(name, compute(dataset, desc=desc))


def data_loaders(
    config: TrainConfig, train_ds: Dataset, val_ds: Dataset, workers: int
) -> tuple[DataLoader, DataLoader]:
    """Seeded shuffling train batches; val batches this process's share of the val split."""
    gen = torch.Generator().manual_seed(config.seed)
    persistent = workers > 0
    pin = resolve_device(config.device) == "cuda"  # page-locked batches copy to the GPU faster
    train_dl = DataLoader(  # under DDP Lightning swaps in a shuffling DistributedSampler
        train_ds,
        batch_size=config.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=workers,
        persistent_workers=persistent,
        pin_memory=pin,
    )
    val_dl = DataLoader(
        val_ds,
        batch_size=max(config.batch_size, 64),
        sampler=ValShardSampler(val_ds),
        num_workers=workers,
        persistent_workers=persistent,
        pin_memory=pin,
    )
    return train_dl, val_dl
