"""Training, torchvision-reference style, on the Lightning Trainer.

`train(config, data_root, manifest, out_dir)` (in `job`) fits a registered model and saves it
as a `models.saved` model directory in `RUN/model/`. The steps live in one module each:
`config` (settings and recipes), `optim` (optimizers and schedules by name), `devices`,
`datasets` (train/val images, corrupted copies), `features` (the frozen part's outputs cached
once), `module` (the LightningModule), `epoch_log` (log.csv and curves), `checkpoints`,
`loaders`, `prepare` (the run folder), `scope` (the out-of-scope detector) and `paths` (the
run folder's file names).

Later recipes plug in through `register_optimizer`, `register_scheduler` and `register_recipe`.
"""

from bloodcell.train.checkpoints import best_checkpoint, load_checkpoint_weights
from bloodcell.train.config import (
    DEFAULT_RECIPE,
    RECIPES,
    TrainConfig,
    config_from_options,
    recipe,
    register_recipe,
)
from bloodcell.train.datasets import MixedCopies, corrupt_seed, corrupted_dataset, fit_stain
from bloodcell.train.devices import (
    ValShardSampler,
    is_rank_zero,
    local_device,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from bloodcell.train.epoch_log import LOG_COLUMNS, EpochLog, append_log_row, plot_curves, read_log
from bloodcell.train.features import (
    build_model,
    cache_start,
    compute_features,
    forward_from,
    frozen_stem,
    random_dihedral,
)
from bloodcell.train.job import train
from bloodcell.train.module import BloodcellModule
from bloodcell.train.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    OptimizerFactory,
    SchedulerFactory,
    register_optimizer,
    register_scheduler,
)
from bloodcell.train.paths import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    LAST_CKPT,
    LOG_FILE,
    MANIFEST_COPY,
    MODEL_DIR,
    SUMMARY_FILE,
)
from bloodcell.train.prepare import data_record
from bloodcell.train.scope import fit_scope

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURVES_FILE",
    "DEFAULT_RECIPE",
    "LAST_CKPT",
    "LOG_COLUMNS",
    "LOG_FILE",
    "MANIFEST_COPY",
    "MODEL_DIR",
    "OPTIMIZERS",
    "RECIPES",
    "SCHEDULERS",
    "SUMMARY_FILE",
    "BloodcellModule",
    "EpochLog",
    "MixedCopies",
    "OptimizerFactory",
    "SchedulerFactory",
    "TrainConfig",
    "ValShardSampler",
    "append_log_row",
    "best_checkpoint",
    "build_model",
    "cache_start",
    "compute_features",
    "config_from_options",
    "corrupt_seed",
    "corrupted_dataset",
    "data_record",
    "fit_scope",
    "fit_stain",
    "forward_from",
    "frozen_stem",
    "is_rank_zero",
    "load_checkpoint_weights",
    "local_device",
    "plot_curves",
    "random_dihedral",
    "read_log",
    "recipe",
    "register_optimizer",
    "register_recipe",
    "register_scheduler",
    "resolve_device",
    "resolve_precision",
    "resolve_workers",
    "train",
]
