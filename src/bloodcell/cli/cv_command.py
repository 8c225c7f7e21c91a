"""`bloodcell cv`: grouped, stratified K-fold cross-validation of a recipe (and the leakage
study that compares grouping protocols)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bloodcell.cli.common import add_data_arg, add_verbose_arg, data_dir
from bloodcell.cli.run_command import add_shortening
from bloodcell.errors import BloodcellError
from bloodcell.records import CvResult, ProtocolsResult

if TYPE_CHECKING:
    from bloodcell.workflows.cv_job import FoldDone


def cv_cmd(args: argparse.Namespace) -> int:
    from bloodcell.cli.train_options import RUN_OPTIONS, given_settings
    from bloodcell.evaluation.cv_figures import CVSettings
    from bloodcell.train.config import config_from_options
    from bloodcell.workflows.cv_job import (
        check_fold,
        compare_protocols,
        compare_protocols_fold,
        run_cv,
        run_cv_fold,
    )

    config = config_from_options(args.recipe, given_settings(args, RUN_OPTIONS))
    settings = CVSettings(
        folds=args.folds,
        grouping=args.group or "near",
        block_size=args.block_size,
        val_fraction=args.val_fraction,
        seeds=tuple(args.seeds),
        calibrate=not args.no_calibrate,
        audit=not args.no_audit,
    )
    if args.fold is not None:
        check_fold(args.fold, settings)  # a typo fails before the data is read
    data, progress, verbose = data_dir(args.data), not args.quiet, args.verbose
    if args.compare_protocols and args.group is not None:
        raise BloodcellError("--compare-protocols runs every grouping itself; leave --group out")
    if args.fold is not None:
        run = compare_protocols_fold if args.compare_protocols else run_cv_fold
        print_folds(run(data, args.out, config, args.fold, settings, progress, verbose=verbose))
        print("when every fold is done, pool them: the same command without --fold")
        return 0
    if args.compare_protocols:
        print_protocols(compare_protocols(data, args.out, config, settings, progress, verbose))
    else:
        print_seeds(run_cv(data, args.out, config, settings, progress, verbose=verbose))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def print_protocols(result: ProtocolsResult) -> None:
    for r in result["protocols"]:
        lo, hi = r["accuracy_ci95"] or (float("nan"), float("nan"))
        print(f"{r['protocol']}: pooled accuracy {r['accuracy']:.2%} "
              f"(95% CI {lo:.2%}-{hi:.2%}), vs image-level "
              f"{100 * r['difference_vs_image']:+.2f} points")  # fmt: skip


def print_folds(done: list[FoldDone]) -> None:
    for d in done:
        how = "trained now" if d.trained_now else "finished before"
        print(f"{d.name}: seed {d.seed}, fold {d.fold}: accuracy {d.accuracy:.2%} on {d.n} "
              f"images ({how}): {d.predictions}")  # fmt: skip


def print_seeds(result: CvResult) -> None:
    for seed in result["seeds"]:
        p = seed["pooled"]
        lo, hi = p["ci95"]["accuracy"] or (float("nan"), float("nan"))
        print(f"seed {seed['seed']}: pooled accuracy {p['accuracy']:.2%} "
              f"(95% CI {lo:.2%}-{hi:.2%}), macro-F1 {p['macro_f1']:.3f}, "
              f"n={p['n']}")  # fmt: skip


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv",
        populate=add_shortening,
        help="grouped, stratified K-fold cross-validation of a recipe (and the leakage study)",
        description="Cross-validate a training recipe: K folds stratified by class, every "
        "duplicate group (with --group block, every block of neighbouring file numbers) inside "
        "one fold, each fold's validation part taken from its training folds the same way; "
        "every image is tested once per seed. Writes OUT/seed-S/fold-F/manifest.csv (one "
        "manifest per fold, byte-identical for the same data and seed; `bloodcell train "
        "--manifest` reads it), run/ and predictions.csv per fold, OUT/cv.json and "
        "OUT/report.md (per-fold table, pooled metrics with 95% intervals from a bootstrap "
        "over groups, pooled confusion matrix, a plot of the folds' spread). Rerun the same "
        "command to continue a killed run: finished folds are skipped. With "
        "--compare-protocols: the same under a random image-level split, grouped by "
        "duplicates, grouped by blocks and grouped by runs of about one patient's images (new "
        "slides), side by side (OUT/report.md, OUT/protocols.json). On a cluster, run each "
        "fold as a job of its own with --fold F, then the same command without --fold to pool "
        "them (docs/distributed.md).",
    )
    add_data_arg(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder, e.g. runs/cv")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    p.add_argument(
        "--group",
        choices=("image", "exact", "near", "block", "run"),
        help="what stays inside one fold: near (default: exact and near-duplicates), exact "
        "(byte-identical copies only), block (also runs of --block-size file numbers, an "
        "approximation of a split by slide), run (runs of about one patient's images, 40 "
        "file numbers: the figure to expect on new slides), image (nothing: the usual random "
        "split, leaky)",
    )
    p.add_argument(
        "--block-size", type=int, metavar="N",
        help="with --group block or run, or --compare-protocols (its blocks): file numbers "
        "k*N..k*N+N-1 of a class folder form one block (default 10 for block, 40 for run)",
    )  # fmt: skip
    p.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="F",
        help="share of each fold's training images (per class) kept back for validation "
        "(default 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0], metavar="N",
        help="seeds; each makes its own folds and trains with that seed (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--compare-protocols", action="store_true",
        help="run the recipe under (a) a random image-level split, (b) grouped by duplicates, "
        "(c) grouped by blocks and (d) grouped by runs of about one patient's images, and "
        "report pooled accuracy side by side with the difference from (a) and its paired "
        "bootstrap interval",
    )  # fmt: skip
    p.add_argument(
        "--fold", type=int, metavar="F",
        help="train only fold F (counted from 1, as in OUT/seed-S/fold-F: 1 to K) of the very "
        "folds the whole command makes, for each seed in --seeds (and, with "
        "--compare-protocols, for each protocol), and pool nothing: one job of a scheduler's "
        "array. Then run the same command without --fold: it skips the finished folds and "
        "pools them",
    )  # fmt: skip
    p.add_argument(
        "--no-calibrate", action="store_true",
        help="skip temperature scaling on each fold's validation part",
    )  # fmt: skip
    p.add_argument(
        "--no-audit", action="store_true",
        help="skip the audit of what each fold's model looks at (its slowest step; the "
        "report then has no pooled audit)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_verbose_arg(p)
    p.set_defaults(func=cv_cmd)
