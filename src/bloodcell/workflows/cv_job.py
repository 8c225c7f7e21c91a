"""`bloodcell cv`: grouped, class-stratified K-fold cross-validation of a training recipe, and
the leakage study that runs the same recipe under the random image-level split beside it.

Why: one test split of a few hundred images gives an accuracy whose interval is about two
points wide, and the published figures on this data come from random image-level splits that
put copies of test images into training. Cross-validation tests every image once (per seed)
and reports a figure over the whole dataset, with its spread over folds and an interval that
resamples duplicate groups rather than images (`metrics.group_bootstrap_ci`).

Each fold (`run_fold`): its manifest (`data.folds`), `train.train` on it, temperature
scaling on its validation part (`calibrate`, as `bloodcell run` does), then predictions for its
test part and the shortcut audit of it (`workflows.audit_job`). The figures are
`evaluation.cv_figures`'s; the reports `reporting.cv_report`'s.
Layout of OUT (`run_dir.CvDir`):

  cv_config.json                    the settings; a rerun with other settings is refused
  verify.json                       what `bloodcell data verify` found
  seed-S/fold-F/manifest.csv        the fold's split (test = this fold), byte-identical for the
                                    same data, settings and seed; `bloodcell train` reads it
  seed-S/fold-F/run/                the fold's training run (model/, log.csv, curves.png, ...)
  seed-S/fold-F/predictions.csv     its out-of-fold predictions, written last and atomically:
                                    a fold with this file is done, and a rerun skips it
  cv.json, report.md, confusion_matrix_seed-S.png, folds.png

With `compare_protocols`, one such folder per protocol (image/, near/, block/), and beside
them protocols.json, report.md and protocols.png.

On a cluster, `run_cv_fold` (`bloodcell cv --fold F`) trains one fold of exactly these folds
as a job of its own, into the same seed-S/fold-F/; the whole command (`run_cv`) run afterwards
with the same options skips every finished fold, as it does after a kill, and pools them
(docs/distributed.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bloodcell.data.folds import (
    DEFAULT_BLOCK_SIZE,
    RUN_BLOCKS,
    check_grouping,
    make_folds,
)
from bloodcell.data.manifest import ManifestRow, select
from bloodcell.data.verify import VerifyReport
from bloodcell.errors import BloodcellError
from bloodcell.evaluation.cv_figures import (
    PROTOCOLS,
    CVSettings,
    check_settings,
    ci_unit,
    over_seeds,
    protocol_rows,
    summarise_seed,
)
from bloodcell.evaluation.cv_fold import (
    fold_probs,
    read_predictions,
    write_fold_manifest,
    write_fold_predictions,
)
from bloodcell.evaluation.metrics import accuracy
from bloodcell.records import CvResult, CvSeed, ProtocolsResult
from bloodcell.run_dir import CvDir, FoldDir, write_json
from bloodcell.train.config import TrainConfig

log = logging.getLogger(__name__)

#: Five folds grouped by duplicates, one seed, calibrated.
DEFAULT_SETTINGS = CVSettings()


def _verified(data_root: Path, progress: bool) -> VerifyReport:
    from bloodcell.data.discover import discover
    from bloodcell.data.verify import verify

    report = verify(discover(data_root), progress=progress)
    for bad in report.unreadable:
        log.info("left out (unreadable): %s: %s", bad["path"], bad["reason"])
    return report


@dataclass(frozen=True)
class FoldDone:
    """One fold finished by `run_cv_fold`: where its predictions are, and how it did."""

    name: str  # "cv", or the protocol of `compare_protocols`
    seed: int
    fold: int
    predictions: Path
    n: int
    accuracy: float
    trained_now: bool


def _prepare(
    data_root: Path,
    out: Path,
    config: TrainConfig,
    settings: CVSettings,
    report: VerifyReport | None,
    progress: bool,
) -> tuple[CVSettings, VerifyReport]:
    """What every cross-validation job does first, alone or as one of a scheduler's folds:
    record the settings (or refuse other ones) and verify the data, so that all the jobs on
    one OUT make the same folds."""
    settings = replace(settings, block_size=check_grouping(settings.grouping, settings.block_size))
    record = {k: v for k, v in asdict(settings).items() if k != "seeds"}
    record |= {"data_root": str(data_root.resolve()), "config": replace(config, seed=0).to_dict()}
    check_settings(out, record)
    report = report or _verified(data_root, progress)
    write_json(CvDir(out).verify, report.to_json(), sort_keys=False)
    return settings, report


def _folds(report: VerifyReport, seed: int, settings: CVSettings) -> list[list[ManifestRow]]:
    return make_folds(
        report,
        settings.folds,
        seed,
        settings.grouping,
        settings.block_size,
        settings.val_fraction,
    )


def check_fold(fold: int, settings: CVSettings) -> None:
    """Refuse a fold number the folds do not have, before any work."""
    if not 1 <= fold <= settings.folds:
        raise BloodcellError(
            f"fold {fold} does not exist: folds are counted from 1 (as in OUT/seed-S/fold-F), "
            f"so with {settings.folds} folds it must be 1 to {settings.folds}"
        )


def run_cv(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    settings: CVSettings = DEFAULT_SETTINGS,
    progress: bool = True,
    report: VerifyReport | None = None,
    name: str = "cv",
    verbose: bool = False,
) -> CvResult:
    """Cross-validate `config` on the data; writes OUT (see the module's docstring) and returns
    what cv.json holds. Folds whose predictions exist are skipped, so a killed run continues
    and folds trained by `run_cv_fold` jobs are only pooled. `verbose` shows Lightning's own
    console output while a fold trains."""
    from bloodcell.reporting.cv_report import write_cv_report

    data_root = Path(data_root).expanduser()
    out = Path(out_dir)
    settings, report = _prepare(data_root, out, config, settings, report, progress)
    unit_of = ci_unit(report, settings.grouping, settings.block_size)
    t_start = time.perf_counter()
    trained = 0
    seeds: list[CvSeed] = []
    for seed in settings.seeds:
        folds = _folds(report, seed, settings)
        done = _run_folds(
            out, seed, folds, data_root, config, settings, progress, name, verbose=verbose
        )
        trained += sum(d.trained_now for d in done)
        seeds.append(summarise_seed(out, seed, folds, unit_of))
    result: CvResult = {
        "name": name,
        "settings": settings.to_record(),
        "recipe": config.recipe,
        "config": config.to_dict(),
        "data": {
            "data_root": str(data_root.resolve()),
            "images": report.total,
            "unreadable": len(report.unreadable),
            "ci_unit": "blocks" if settings.grouping == "block" else "duplicate groups",
            "ci_groups": len(set(unit_of.values())),
        },
        "seeds": seeds,
        "folds_trained_now": trained,
        "seconds_now": round(time.perf_counter() - t_start, 1),
    }
    if len(seeds) > 1:
        result["over_seeds"] = over_seeds(seeds)
    write_json(CvDir(out).result, result)
    log.info("%s: report %s", name, write_cv_report(result, out))
    return result


def run_cv_fold(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    fold: int,
    settings: CVSettings = DEFAULT_SETTINGS,
    progress: bool = True,
    report: VerifyReport | None = None,
    name: str = "cv",
    verbose: bool = False,
) -> list[FoldDone]:
    """Only fold `fold` (counted from 1) of each seed of the cross-validation `run_cv` would
    make with these arguments, into the same OUT/seed-S/fold-F/, as one job of a scheduler's
    array: the same settings check, folds and training, skipped when already finished; no
    pooling, which `run_cv` does afterwards. Jobs for different folds may share OUT at once."""
    check_fold(fold, settings)
    data_root = Path(data_root).expanduser()
    out = Path(out_dir)
    settings, report = _prepare(data_root, out, config, settings, report, progress)
    done: list[FoldDone] = []
    for seed in settings.seeds:
        folds = _folds(report, seed, settings)
        done += _run_folds(
            out, seed, folds, data_root, config, settings, progress, name, fold, verbose
        )
    return done


def _run_folds(
    out: Path,
    seed: int,
    folds: list[list[ManifestRow]],
    data_root: Path,
    config: TrainConfig,
    settings: CVSettings,
    progress: bool,
    name: str,
    only: int | None = None,
    verbose: bool = False,
) -> list[FoldDone]:
    """Write each fold's manifest and train, calibrate and predict it unless it is finished
    (every fold, or fold `only`); returns each fold's outcome."""
    done: list[FoldDone] = []
    for i, rows in enumerate(folds):
        if only is not None and i + 1 != only:
            continue
        fold = CvDir(out).fold(seed, i + 1)
        write_fold_manifest(rows, fold.manifest)
        where = f"{name}: seed {seed}, fold {i + 1}/{len(folds)}"
        if fold.predictions.is_file():
            log.info("%s: finished before (%s), skipped", where, fold.predictions)
            done.append(_outcome(name, seed, i + 1, fold.predictions, trained_now=False))
            continue
        n = {s: len(select(rows, s)) for s in ("train", "val", "test")}
        log.info(
            "%s: training on %d images (val %d), testing on %d",
            where,
            n["train"],
            n["val"],
            n["test"],
        )
        t0 = time.perf_counter()
        # A fold's model only predicts its test part: no out-of-scope detector is fitted.
        fold_config = replace(config, seed=seed, ood_acceptance=None)
        preds = run_fold(
            fold, rows, data_root, fold_config, settings.calibrate, progress, settings.audit,
            verbose,
        )  # fmt: skip
        done.append(_outcome(name, seed, i + 1, preds, trained_now=True))
        seconds, acc = time.perf_counter() - t0, done[-1].accuracy
        log.info("%s: done in %.0f s, accuracy %s", where, seconds, f"{acc:.1%}")
    return done


def _outcome(name: str, seed: int, fold: int, predictions: Path, trained_now: bool) -> FoldDone:
    _, y, probs = read_predictions(predictions)
    acc = accuracy(y, probs.argmax(1))
    return FoldDone(name, seed, fold, predictions, len(y), acc, trained_now)


def compare_protocols(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    settings: CVSettings = DEFAULT_SETTINGS,
    progress: bool = True,
    verbose: bool = False,
) -> ProtocolsResult:
    """The same recipe, folds and seeds under each of `PROTOCOLS`, each into OUT/<protocol>/,
    then pooled accuracy side by side with its difference from (a) and a paired interval."""
    from bloodcell.evaluation.metrics import BOOTSTRAP_SEED, N_BOOTSTRAP
    from bloodcell.reporting.cv_report import write_protocol_report

    data_root = Path(data_root).expanduser()
    out = Path(out_dir)
    block_size = settings.block_size or DEFAULT_BLOCK_SIZE
    report = _verified(data_root, progress)
    runs = {}
    for protocol, s in _protocol_settings(settings).items():
        where = CvDir(out).protocol(protocol).path
        runs[protocol] = run_cv(data_root, where, config, s, progress, report, protocol, verbose)
    # Runs hold whole blocks (their length a multiple of the blocks') and every duplicate
    # group, so resampling runs is fair to all four protocols.
    unit_of = ci_unit(report, "run", RUN_BLOCKS * block_size)
    paths = sorted(unit_of)
    groups = [unit_of[p] for p in paths]
    result: ProtocolsResult = {
        "folds": settings.folds,
        "seeds": list(settings.seeds),
        "block_size": block_size,
        "recipe": config.recipe,
        "images": len(paths),
        "bootstrap": {
            "unit": f"runs of {RUN_BLOCKS * block_size} file numbers joined with duplicate groups",
            "groups": len(set(groups)),
            "resamples": N_BOOTSTRAP,
            "seed": BOOTSTRAP_SEED,
            "method": "paired percentile bootstrap over groups",
        },
        "protocols": protocol_rows(out, runs, paths, groups),
    }
    write_json(CvDir(out).protocols, result)
    log.info("protocols: report %s", write_protocol_report(result, out))
    return result


def compare_protocols_fold(
    data_root: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    fold: int,
    settings: CVSettings = DEFAULT_SETTINGS,
    progress: bool = True,
    verbose: bool = False,
) -> list[FoldDone]:
    """Fold `fold` of each protocol (and seed) of `compare_protocols`, as one job of a
    scheduler's array; `compare_protocols` afterwards skips the finished folds and compares."""
    check_fold(fold, settings)
    data_root = Path(data_root).expanduser()
    report = _verified(data_root, progress)
    done: list[FoldDone] = []
    for protocol, s in _protocol_settings(settings).items():
        where = CvDir(Path(out_dir)).protocol(protocol).path
        done += run_cv_fold(data_root, where, config, fold, s, progress, report, protocol, verbose)
    return done


def _protocol_settings(settings: CVSettings) -> dict[str, CVSettings]:
    """The settings of each protocol: the same folds, seeds and recipe, another grouping."""
    block = settings.block_size or DEFAULT_BLOCK_SIZE
    sizes = {"block": block, "run": RUN_BLOCKS * block}  # runs hold whole blocks
    return {p: replace(settings, grouping=p, block_size=sizes.get(p)) for p in PROTOCOLS}


def run_fold(
    fold: FoldDir,
    rows: list[ManifestRow],
    data_root: Path,
    config: TrainConfig,
    calibrate: bool = True,
    progress: bool = True,
    audit: bool = True,
    verbose: bool = False,
) -> Path:
    """Train (or finish training) on the fold's manifest, calibrate, audit what it looks at
    (`workflows.audit_job`, unless `audit` is off), and write its out-of-fold predictions; returns
    the predictions file."""
    from bloodcell.evaluation.calibrate import calibrate_run
    from bloodcell.train.job import train
    from bloodcell.workflows.audit_job import audit_run

    run = fold.run
    if not run.model.is_dir():
        resume = run.train_config.is_file()  # killed mid-training: go on from last.ckpt
        train(
            config, data_root, fold.manifest, run.path, resume=resume, progress=progress,
            verbose=verbose,
        )  # fmt: skip
    if calibrate:
        calibrate_run(run.path)  # fits on uncalibrated logits, so a rerun gives the same value
    probs = fold_probs(run, rows, data_root, progress)
    if audit:
        audit_run(run.path, "test", data_root, fold.manifest, progress=progress)
    return write_fold_predictions(fold, rows, probs)
