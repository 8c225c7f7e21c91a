"""Training, torchvision-reference style, on the Lightning Trainer.

`train.job.train(config, data_root, manifest, out_dir)` fits a registered model and saves it
as a `models.saved` model directory in `RUN/model/`. The steps live in one module each:
`config` (settings and recipes), `optim` (optimizers and schedules by name), `devices`,
`datasets` (train/val images, corrupted copies), `features` (the frozen part's outputs cached
once), `module` (the LightningModule), `epoch_log` (log.csv and curves), `checkpoints`,
`loaders`, `prepare` (the run folder), `scope_pass` (the out-of-scope detector) and `outliers`
(other white-cell types shown as outliers, for the cell-type gate). The run
folder's file names are `run_dir`'s, the one place that knows them.

Later recipes plug in through `optim.register_optimizer`, `optim.register_scheduler` and
`config.register_recipe`.

Each name is imported from its module; this package re-exports nothing, so reading the
settings (`bloodcell.train.config`, e.g. to check a command line) does not import Lightning.
"""
