"""Where and how training runs: device, precision and loader workers from "auto" settings, and
which process this is under DDP (before the Trainer knows), with a validation sampler that
counts every image once over all processes."""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any, cast

import torch
from torch.utils.data import Dataset, DistributedSampler


def resolve_device(device: str = "auto") -> str:
    """'auto' -> the best available of cuda, mps, cpu."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> mixed precision on CUDA (bf16 where supported), full fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def resolve_workers(workers: int | None) -> int:
    """None -> 0 (load in this process) with 4 cores or fewer, else half the cores, at most 8."""
    if workers is not None:
        return workers
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores // 2)


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, before the Trainer knows: from what torchrun
    (RANK), Lightning's launcher (LOCAL_RANK, NODE_RANK) and SLURM (SLURM_PROCID) set. Only
    rank 0 writes the run dir; a plain single-process run is rank 0."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env or "NODE_RANK" in env:
        node = env.get("NODE_RANK", env.get("GROUP_RANK", "0"))
        return int(env.get("LOCAL_RANK", "0")) == 0 and int(node) == 0
    return int(env.get("SLURM_PROCID", "0")) == 0


def local_device(device: str) -> str:
    """`cuda` -> this process's own GPU (`cuda:LOCAL_RANK`) for work done before the Trainer
    places the model, such as the feature cache; other devices unchanged."""
    if device != "cuda":
        return device
    rank = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    return f"cuda:{int(rank)}"


class ValShardSampler(DistributedSampler):
    """This rank's share of the validation set, every image exactly once over all ranks.

    Lightning's injected DistributedSampler pads the set with repeats to an equal share per
    rank, which would count some images twice in the val metrics. Being a DistributedSampler,
    this one is left in place; world size and rank are read when iterating (after DDP setup).
    """

    def __init__(self, dataset: Dataset) -> None:  # no super().__init__: it needs the group
        self.dataset = dataset
        self.epoch = 0

    def _shard(self) -> range:
        dist = torch.distributed
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
        return range(rank, len(cast(Sized, self.dataset)), world)

    def __iter__(self) -> Any:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())
