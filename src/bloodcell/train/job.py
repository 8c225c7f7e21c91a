"""A training run end to end: `train(config, data_root, manifest, out_dir)` fits a registered
model on the manifest's train split with the Lightning Trainer, validates every epoch, keeps the
best checkpoint (by val accuracy, ties broken by val loss) and `last.ckpt` (for `resume=True`
after Ctrl-C or a killed process), and saves the chosen epoch's weights as a `models.saved`
model directory in `RUN/model/`, with its out-of-scope detector."""

from __future__ import annotations

import logging
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from bloodcell.data.manifest import read_manifest
from bloodcell.records import TrainSeconds, TrainSummary
from bloodcell.run_dir import (
    CHECKPOINT_DIR,
    CURVES_FILE,
    LAST_CKPT,
    LOG_FILE,
    MODEL_DIR,
    TRAIN_SUMMARY_FILE,
    write_json,
)
from bloodcell.train.checkpoints import (
    best_checkpoint,
    checkpoint_callbacks,
    checkpoint_epoch,
    load_checkpoint_weights,
)
from bloodcell.train.config import TrainConfig
from bloodcell.train.console import lightning_console
from bloodcell.train.datasets import fit_stain
from bloodcell.train.devices import resolve_device, resolve_precision
from bloodcell.train.epoch_log import EpochLog, log_row, plot_curves
from bloodcell.train.features import build_model, cache_start
from bloodcell.train.loaders import loaders
from bloodcell.train.module import BloodcellModule
from bloodcell.train.outliers import fit_cell_gate
from bloodcell.train.prepare import data_record, prepare_run
from bloodcell.train.scope_pass import fit_scope

if TYPE_CHECKING:
    from lightning.fabric.connector import _PRECISION_INPUT

    from bloodcell.models.registry import Classifier

log = logging.getLogger(__name__)
#: Validation accuracy this close to chance (1 / classes) means the model learnt nothing.
CHANCE_MARGIN = 0.1


def train(
    config: TrainConfig | None,
    data_root: str | Path | None,
    manifest_path: str | Path | None,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    verbose: bool = False,
) -> Path:
    """Train into `out_dir` (the run dir) and return it; the model is saved in `RUN/model/`.

    With `resume=True`, settings, data root and manifest default to the run's own records, and
    training continues from `checkpoints/last.ckpt` (the last finished epoch). A Ctrl-C raises
    KeyboardInterrupt after Lightning's graceful shutdown; the run can then be resumed.
    `verbose` shows Lightning's own lines, model summary and per-step metrics (`console`).
    """
    from bloodcell.models.saved import save_model

    run = Path(out_dir)
    config, data_root, manifest_path = prepare_run(
        _absolute_stain_target(config),
        Path(data_root).expanduser() if data_root else None,
        Path(manifest_path) if manifest_path else None,
        run,
        resume,
    )
    if config.cells_only and not config.outliers:
        log.warning(
            "no --outliers given: the model will not learn to refuse white cells of other "
            "types (neutrophils, monocytes, lymphocytes ...) and may name them as a class"
        )
    pl.seed_everything(config.seed, workers=True, verbose=False)
    rows = read_manifest(manifest_path)
    # Fitted once per run; the saved model carries the result, not the target image.
    pre = config.preprocess(fit_stain(config, rows, data_root))
    module = BloodcellModule(config.to_dict(), _cache_start(config))
    train_dl, val_dl, cache_s, scope = loaders(config, module, data_root, rows, progress, pre)
    trainer = _trainer(config, run, callbacks, progress, verbose)
    t0 = time.perf_counter()
    _fit(trainer, module, train_dl, val_dl, run, resume)
    seconds: TrainSeconds = {
        "feature_seconds": round(cache_s, 2),
        "fit_seconds": round(time.perf_counter() - t0, 2),
    }
    if not trainer.is_global_zero:
        return run  # rank 0 writes the curves, the summary and the model
    plot_curves(run / LOG_FILE, run / CURVES_FILE)
    model, summary = _chosen_model(config, run, trainer, module, seconds)
    warn_at_chance(summary["best_val"].get("val_acc"), run)
    write_json(run / TRAIN_SUMMARY_FILE, summary)
    save_model(
        model,
        run / MODEL_DIR,
        architecture=config.model,
        preprocess=pre,
        training={**config.to_dict(), **summary},
        data=data_record(manifest_path, data_root),
    )
    if config.ood_acceptance is not None and scope is not None:
        scope.fit(model, run / MODEL_DIR, config.ood_acceptance)
    elif config.ood_acceptance is not None:
        fit_scope(run / MODEL_DIR, config, rows, data_root, pre, progress)
    if config.outliers:
        fit_cell_gate(
            model,
            val_dl,
            module.start,
            run / MODEL_DIR,
            config.outliers,
            config.outlier_share,
            config.gate_acceptance,
        )
    return run


def warn_at_chance(val_acc: float | None, run: Path) -> bool:
    """Say loudly when the best validation accuracy is at chance: the model learnt nothing
    (blank inputs, broken labels, a learning rate far off), and every figure made from it is
    meaningless. Returns whether it was."""
    from bloodcell.labels import LABELS

    chance = 1 / len(LABELS)
    if val_acc is None or val_acc > chance + CHANCE_MARGIN:
        return False
    log.error(
        "%s: the model learnt nothing: best validation accuracy %.1f%% is at chance (%.0f%%). "
        "Do not use it; look at what it was shown (bloodcell data cells, the recipe's options).",
        run,
        100 * val_acc,
        100 * chance,
    )
    return True


def _absolute_stain_target(config: TrainConfig | None) -> TrainConfig | None:
    """`stain_target` made absolute, so that a resume from elsewhere finds it too."""
    if config is None or not config.stain_target:
        return config
    target = Path(config.stain_target).expanduser().resolve()
    return replace(config, stain_target=str(target))


def _cache_start(config: TrainConfig) -> str | int | None:
    """`features.cache_start` for the configured model (built once, untrained, to count its
    backbone blocks)."""
    probe = build_model(replace(config, pretrained=False))
    return cache_start(config, len(probe.backbone))


def _trainer(
    config: TrainConfig, run: Path, callbacks: Sequence[Any], progress: bool, verbose: bool
) -> Any:
    from lightning.pytorch.loggers import CSVLogger

    bar = lightning_console(progress, verbose)
    device = resolve_device(config.device)
    return pl.Trainer(
        max_epochs=config.epochs,
        accelerator=device,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=cast("_PRECISION_INPUT", resolve_precision(config.precision, device)),
        deterministic="warn",
        callbacks=[EpochLog(run / LOG_FILE), *checkpoint_callbacks(run), *bar, *callbacks],
        logger=CSVLogger(run, name="lightning_logs"),
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=verbose,
        log_every_n_steps=10,
        default_root_dir=run,
    )


def _fit(
    trainer: pl.Trainer,
    module: BloodcellModule,
    train_dl: DataLoader,
    val_dl: DataLoader,
    run: Path,
    resume: bool,
) -> None:
    """`trainer.fit`, from last.ckpt when resuming, without the warnings that do not apply here;
    a Ctrl-C comes back as KeyboardInterrupt."""
    last = run / CHECKPOINT_DIR / LAST_CKPT
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        try:
            trainer.fit(
                module, train_dl, val_dl, ckpt_path=last if resume and last.exists() else None
            )
        except SystemExit as exc:  # Lightning turns Ctrl-C into sys.exit(1) after saving state
            if trainer.interrupted:
                # Lightning ignores further Ctrl-C during its shutdown; give it back to the caller.
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt(
                    f"training interrupted; resume with --resume --out {run}"
                ) from exc
            raise


def _chosen_model(
    config: TrainConfig,
    run: Path,
    trainer: pl.Trainer,
    module: BloodcellModule,
    seconds: TrainSeconds,
) -> tuple[Classifier, TrainSummary]:
    """The model with the weights of the epoch `config.checkpoint` chooses, and the run's
    summary (`train_summary.json`, also recorded in the model's config)."""
    best = best_checkpoint(run)
    chosen = best if config.checkpoint == "best" else run / CHECKPOINT_DIR / LAST_CKPT
    model = build_model(replace(config, pretrained=False))
    ckpt = load_checkpoint_weights(model, chosen)
    best_epoch = int(ckpt.get("epoch", -1)) if chosen == best else checkpoint_epoch(best)
    summary: TrainSummary = {
        "best_checkpoint": best.name,
        "best_epoch": best_epoch,
        "best_val": log_row(run / LOG_FILE, best_epoch),
        "model_checkpoint": chosen.name,
        "model_epoch": int(ckpt.get("epoch", -1)),
        "epochs_trained": int(trainer.current_epoch),
        "device": resolve_device(config.device),
        "precision": resolve_precision(config.precision, resolve_device(config.device)),
        "feature_cache": module.start,
        **seconds,
        "world_size": int(trainer.world_size),
        # train samples each process saw in this session (all epochs): every rank took part
        "train_samples_per_rank": module.rank_samples,
        "val_images": module.val_count,
    }
    return model, summary
