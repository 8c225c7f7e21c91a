"""Optimizers and learning-rate schedules by name, so recipes can choose them and later ones can
add their own (`register_optimizer`, `register_scheduler`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bloodcell.train.config import TrainConfig

OptimizerFactory = Callable[[list[nn.Parameter], TrainConfig], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, TrainConfig, int], Any]
OPTIMIZERS: dict[str, OptimizerFactory] = {}
SCHEDULERS: dict[str, SchedulerFactory] = {}


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    def wrap(fn: OptimizerFactory) -> OptimizerFactory:
        OPTIMIZERS[name] = fn
        return fn

    return wrap


def register_scheduler(name: str) -> Callable[[SchedulerFactory], SchedulerFactory]:
    """Register `fn(optimizer, config, total_steps) -> scheduler stepped every batch (or None)`."""

    def wrap(fn: SchedulerFactory) -> SchedulerFactory:
        SCHEDULERS[name] = fn
        return fn

    return wrap


@register_optimizer("adam")
def _adam(params: list[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)


@register_optimizer("adamw")
def _adamw(params: list[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)


@register_optimizer("sgd")
def _sgd(params: list[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=c.lr, momentum=0.9, nesterov=True, weight_decay=c.weight_decay
    )


@register_scheduler("none")
def _no_schedule(opt: torch.optim.Optimizer, c: TrainConfig, total_steps: int) -> None:
    return None


@register_scheduler("cosine")
def _cosine(opt: torch.optim.Optimizer, c: TrainConfig, total_steps: int) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))


@register_scheduler("onecycle")
def _onecycle(opt: torch.optim.Optimizer, c: TrainConfig, total_steps: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=max(2, total_steps))


def optimization(params: list[nn.Parameter], c: TrainConfig, total_steps: Callable[[], int]) -> Any:
    """What `LightningModule.configure_optimizers` returns for `c`: the optimizer, with its
    schedule stepped every batch when there is one. `total_steps` is only asked once both
    names are known to be registered (Lightning sets up the train loader to answer it)."""
    if c.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {c.optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    if c.schedule not in SCHEDULERS:
        raise ValueError(f"unknown schedule {c.schedule!r}; choose one of {sorted(SCHEDULERS)}")
    opt = OPTIMIZERS[c.optimizer](params, c)
    sched = SCHEDULERS[c.schedule](opt, c, total_steps())
    if sched is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
