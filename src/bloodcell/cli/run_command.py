"""`bloodcell run`: the main job, from the dataset folder to the report and the model card."""

from __future__ import annotations

import argparse

from bloodcell.cli.common import Parser, add_data_arg, add_export_arg, add_verbose_arg, data_dir


def run_cmd(args: argparse.Namespace) -> int:
    from bloodcell.cli.train_options import RUN_OPTIONS, given_settings
    from bloodcell.train.config import config_from_options
    from bloodcell.workflows.run_job import run

    run(
        data_dir(args.data),
        args.out,
        seed=args.seed,
        config=config_from_options(args.recipe, given_settings(args, RUN_OPTIONS)),
        scope_dirs=args.ood,
        export=args.export,
        verbose=args.verbose,
    )
    return 0


def add_shortening(p: Parser) -> None:
    """`--recipe` (default: the default recipe) and the training options `run` and `cv` offer
    for quick looks and tests."""
    from bloodcell.cli.train_options import (
        OUTLIER_OPTIONS,
        SHORTENING,
        add_recipe_option,
        add_train_options,
    )
    from bloodcell.train.config import DEFAULT_RECIPE

    add_recipe_option(p, DEFAULT_RECIPE)
    quick = p.add_argument_group("shortening (quick looks and tests; defaults are the recipe's)")
    add_train_options(quick, SHORTENING)
    add_train_options(p.add_argument_group("cells the model must not name"), OUTLIER_OPTIONS)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        populate=add_shortening,
        help="the main job: verify, split, train mobilenet_v2, calibrate, evaluate val and test, "
        "report",
        description="Run everything with the default settings and print where it all went: "
        "OUT/data/verify.json and figures, OUT/manifest.csv (grouped split; unreadable files "
        "are reported and left out), the training run in OUT (model/, log.csv, curves.png; the "
        "model carries its out-of-scope detector and conformal prediction sets), "
        "OUT/eval/{val,test}/report.md, a summary OUT/report.md and the model card "
        "OUT/model/README.md. Re-running into the same "
        "OUT resumes an interrupted training.",
    )
    add_data_arg(p)
    p.add_argument(
        "--out", metavar="DIR", default="runs/latest", help="output folder (default runs/latest)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the split and training (default 0)"
    )
    add_export_arg(p)
    add_verbose_arg(p)
    p.add_argument(
        "--ood",
        nargs="+",
        metavar="DIR",
        default=None,
        help="folders of images unlike the training data (other labs, other cells, photos): "
        "how many the out-of-scope detector refuses goes into the report",
    )
    p.set_defaults(func=run_cmd)
