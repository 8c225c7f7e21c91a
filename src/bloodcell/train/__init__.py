"""Training, torchvision-reference style, on the Lightning Trainer.

`train(config, data_root, manifest, out_dir)` (in `job`) fits a registered model and saves it
as a `models.saved` model directory in `RUN/model/`. The steps live in one module each:
`config` (settings and recipes), `optim` (optimizers and schedules by name), `devices`,
`datasets` (train/val images, corrupted copies), `features` (the frozen part's outputs cached
once), `module` (the LightningModule), `epoch_log` (log.csv and curves), `checkpoints`,
`loaders`, `prepare` (the run folder) and `scope` (the out-of-scope detector). The run
folder's file names are `run_dir`'s, the one place that knows them.

Later recipes plug in through `register_optimizer`, `register_scheduler` and `register_recipe`.

The names below load their module on first use (PEP 562), so reading the settings
(`bloodcell.train.config`, e.g. to check a command line) does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Where each public name lives.
_HOME: dict[str, str] = {
    **dict.fromkeys(("best_checkpoint", "load_checkpoint_weights"), "checkpoints"),
    **dict.fromkeys(
        (
            "DEFAULT_RECIPE",
            "RECIPES",
            "TrainConfig",
            "config_from_options",
            "recipe",
            "register_recipe",
        ),
        "config",
    ),
    **dict.fromkeys(("MixedCopies", "corrupt_seed", "corrupted_dataset", "fit_stain"), "datasets"),
    **dict.fromkeys(
        (
            "ValShardSampler",
            "is_rank_zero",
            "local_device",
            "resolve_device",
            "resolve_precision",
            "resolve_workers",
        ),
        "devices",
    ),
    **dict.fromkeys(
        ("EpochLog", "LOG_COLUMNS", "append_log_row", "plot_curves", "read_log"), "epoch_log"
    ),
    **dict.fromkeys(
        (
            "build_model",
            "cache_start",
            "compute_features",
            "forward_from",
            "frozen_stem",
            "random_dihedral",
        ),
        "features",
    ),
    **dict.fromkeys(("train",), "job"),
    **dict.fromkeys(("BloodcellModule",), "module"),
    **dict.fromkeys(
        (
            "OPTIMIZERS",
            "OptimizerFactory",
            "SCHEDULERS",
            "SchedulerFactory",
            "register_optimizer",
            "register_scheduler",
        ),
        "optim",
    ),
    **dict.fromkeys(("data_record",), "prepare"),
    **dict.fromkeys(("fit_scope",), "scope"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'bloodcell.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bloodcell.train.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
