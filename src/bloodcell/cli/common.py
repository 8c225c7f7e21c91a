"""What every command module shares: the parser class, the dataset folder, checked numbers."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bloodcell.errors import BloodcellError

if TYPE_CHECKING:
    from bloodcell.records import EngineRecords

Populate = Callable[["Parser"], None]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a bad command line as one `BloodcellError` line, and can
    add options on first use (`populate`): options read from `TrainConfig` import torch and
    Lightning, which `bloodcell --help` and the data commands should not wait for."""

    def __init__(self, *args: Any, populate: Populate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def ready(self) -> Parser:
        """Add the deferred options (once); every parse and help text comes through here."""
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)
        return self

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.ready()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.ready()
        return super().format_usage()

    def format_help(self) -> str:
        self.ready()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        """One line naming the command and what was wrong, printed by `main` like any other
        user error (argparse would print the whole usage first)."""
        command = self.prog.partition(" ")[2]
        raise BloodcellError(f"{command}: {message}" if command else message)


def data_dir(value: str | None) -> Path:
    """Resolve --data, falling back to $BLOODCELL_DATA, with an actionable error."""
    value = value or os.environ.get("BLOODCELL_DATA")
    if not value:
        raise BloodcellError(
            "no dataset folder given: pass --data DIR or set BLOODCELL_DATA=DIR "
            "(run `bloodcell data download` to fetch the Kaggle dataset)"
        )
    return Path(value).expanduser()


def add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="dataset folder (any supported layout); default: $BLOODCELL_DATA",
    )


def bounded(kind: type, low: float, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` from `low` to `high` (inclusive; None = no limit)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {text}")
        return value

    return parse


#: `--engine`'s choices, literally so that parsing imports no torch (a test keeps them equal to
#: `models.engines.ENGINES`).
ENGINE_CHOICES = ("auto", "torch", "onnx", "onnx-int8")


def add_engine_arg(p: argparse.ArgumentParser) -> None:
    """`--engine`: how the model runs (the same choice on every command that runs it)."""
    p.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="auto (default): the fastest engine in the model directory whose check passed "
        "(int8 ONNX, then fp32 ONNX, else torch); or name one. `bloodcell train` and "
        "`bloodcell run` write and check the ONNX engines; `bloodcell export` does it for "
        "older models",
    )


def add_export_arg(p: argparse.ArgumentParser) -> None:
    """`--no-export`: skip writing and checking the ONNX engines after training."""
    p.add_argument(
        "--no-export",
        dest="export",
        action="store_false",
        help="do not write model.onnx and model.int8.onnx after training (by default both are "
        "written, checked against the model on the validation split, and kept only if they "
        "pass; `--engine auto` then uses the fastest)",
    )


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    """`--verbose`: Lightning's own console output while training, which is otherwise quiet."""
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="while training, also show Lightning's own lines, its model-summary table and "
        "the metrics of every step (by default: bloodcell's lines and one progress bar per "
        "epoch; the metrics are in log.csv either way)",
    )


def print_engine_checks(records: EngineRecords) -> None:
    """The export's verdict on each engine, one line each."""
    from bloodcell.export.check import summary_lines

    for line in summary_lines(records):
        print(line)
