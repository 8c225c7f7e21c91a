"""The names training uses for its run folder's files, from `run_dir` (the one place that knows
a run's folders), under the names the train package has always used."""

from bloodcell.run_dir import (
    CHECKPOINT_DIR,
    CURVES_FILE,
    LAST_CKPT,
    LOG_FILE,
    MANIFEST_COPY,
    MODEL_DIR,
)
from bloodcell.run_dir import TRAIN_CONFIG_FILE as CONFIG_FILE
from bloodcell.run_dir import TRAIN_SUMMARY_FILE as SUMMARY_FILE

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURVES_FILE",
    "LAST_CKPT",
    "LOG_FILE",
    "MANIFEST_COPY",
    "MODEL_DIR",
    "SUMMARY_FILE",
]
