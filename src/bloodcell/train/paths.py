"""Names of the files and folders a training run writes in its run folder; other modules
(pipeline, cv, evaluate) and tests read them by these names."""

CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
LOG_FILE = "log.csv"
CURVES_FILE = "curves.png"
CONFIG_FILE = "train_config.json"
SUMMARY_FILE = "train_summary.json"
MANIFEST_COPY = "manifest.csv"
MODEL_DIR = "model"
