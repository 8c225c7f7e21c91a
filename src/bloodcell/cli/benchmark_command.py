"""`bloodcell benchmark`: train and time each recipe beside the reference; one table."""

from __future__ import annotations

import argparse

from bloodcell.cli.common import Parser, add_data_arg, add_verbose_arg, data_dir

#: The training options `benchmark` passes on to every recipe's `bloodcell train`.
BENCHMARK_SHORTENING = ("pretrained", "epochs", "image_size")


def benchmark_cmd(args: argparse.Namespace) -> int:
    from bloodcell.cli.train_options import given_settings, train_argv
    from bloodcell.workflows.benchmark_job import benchmark

    benchmark(
        data_dir(args.data),
        args.out,
        recipes=args.recipes,
        seeds=args.seeds,
        seconds=args.seconds,
        runs=args.runs,
        train_args=train_argv(given_settings(args, BENCHMARK_SHORTENING)),
        scope_dirs=args.ood or (),
        verbose=args.verbose,
    )
    return 0


def _recipes_and_shortening(p: Parser) -> None:
    from bloodcell.cli.train_options import add_train_options, registered_choices

    p.add_argument(
        "--recipes", nargs="+", default=["fast"], metavar="NAME",
        choices=registered_choices()["recipe"],
        help="recipes to compare with the reference (default: fast)",
    )  # fmt: skip
    quick = p.add_argument_group("shortening (tests and quick looks; override every recipe's)")
    add_train_options(quick, BENCHMARK_SHORTENING)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        populate=_recipes_and_shortening,
        help="train and time each recipe beside the reference; print one table",
        description="On one machine, in one run: split the data, train the reference recipe and "
        "each given recipe (each in its own process, to measure its wall time and peak memory), "
        "calibrate and evaluate them on the test split, export ONNX fp32 and int8, and time "
        "torch eager and ONNX Runtime at batch 32 and batch 1. Prints a table and writes "
        "OUT/benchmark.md and OUT/benchmark.json. Finished trainings in OUT are reused.",
    )
    add_data_arg(p)
    p.add_argument("--out", metavar="DIR", default="runs/benchmark", help="default runs/benchmark")
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0], metavar="N",
        help="training seeds per recipe (default 0; use 0 1 2 for mean ± spread)",
    )  # fmt: skip
    p.add_argument("--seconds", type=float, default=3.0, help="time per throughput figure")
    p.add_argument("--runs", type=int, default=100, help="batch-1 calls per latency figure")
    p.add_argument(
        "--ood", nargs="+", metavar="DIR",
        help="folders of images unlike the training data: the share each model refuses",
    )  # fmt: skip
    add_verbose_arg(p)
    p.set_defaults(func=benchmark_cmd)
