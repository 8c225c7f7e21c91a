"""The `bloodcell` command line: parses arguments and calls the library, nothing more.

One module per command group, in pipeline order: `data_commands`, `model_commands` (weights,
train, evaluate), `use_commands` (calibrate, predict, explain, export), `serve_command`,
`run_command`, `cv_command`, `benchmark_command`. Handlers are
module-level functions that import their library modules when called, so `bloodcell --help`
answers at once; the training options come from `TrainConfig` (`train_options`). The library
reports progress through `logging` (a logger per module); `main` sets the one handler, plain
lines on stderr at INFO (`-q` hides progress bars only, not these lines).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from bloodcell._version import __version__
from bloodcell.cli import (
    benchmark_command,
    cv_command,
    data_commands,
    model_commands,
    run_command,
    serve_command,
    use_commands,
)
from bloodcell.cli.common import Parser
from bloodcell.errors import BloodcellError

#: Commands that do heavy tensor work and so re-execute under the fast allocator.
HEAVY_COMMANDS = frozenset(
    {"train", "evaluate", "calibrate", "audit", "explain", "export", "run", "cv", "benchmark"}
)
#: Commands that re-execute only when they run torch eager (`--engine torch`): with an ONNX
#: engine the re-execution costs more start-up than the allocator saves (BENCHMARKS.md,
#: "Start-up and whole-folder predict").
TORCH_ONLY_COMMANDS = frozenset({"predict", "serve"})


def build_parser() -> Parser:
    parser = Parser(
        prog="bloodcell",
        description="Classify B-ALL peripheral blood smear images: verify and split the data "
        "without leakage, train, evaluate, explain, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"bloodcell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (
        data_commands,
        model_commands,
        use_commands,
        serve_command,
        run_command,
        cv_command,
        benchmark_command,
    ):
        group.add_commands(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of a command line (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def wants_fast_allocator(argv: Sequence[str]) -> bool:
    """Whether this command line pays for the re-execution under the fast allocator."""
    command = command_of(argv)
    if command in HEAVY_COMMANDS:
        return True
    if command in TORCH_ONLY_COMMANDS:
        args = list(argv)
        pairs = zip(args, [*args[1:], ""], strict=True)
        return "--engine=torch" in args or any(a == "--engine" and b == "torch" for a, b in pairs)
    return False


class _Stderr(logging.StreamHandler):
    """A handler on whatever `sys.stderr` is when a line is written, so a redirected stderr
    (a test's capture, a caller's) gets the lines too."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def log_to_stderr(level: int = logging.INFO) -> None:
    """The one logging setup: the library's progress lines (`logging`, one logger per module
    under `bloodcell`) as plain lines on stderr. Idempotent, since `main` may run many times in
    one process."""
    logger = logging.getLogger("bloodcell")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Run as a program (argv None), heavy commands re-execute once under a fast
    memory allocator (see `bloodcell.allocator`) before parsing, since parsing the training
    options already loads torch (`predict` and `serve` only on the torch engine); called
    in-process with argv, they never do."""
    if argv is None and wants_fast_allocator(sys.argv[1:]):
        from bloodcell.allocator import reexec_with_fast_allocator

        reexec_with_fast_allocator(sys.argv[1:])
    log_to_stderr()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except BloodcellError as exc:
        print(f"bloodcell: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bloodcell: interrupted", file=sys.stderr)
        return 130


__all__ = [
    "HEAVY_COMMANDS",
    "TORCH_ONLY_COMMANDS",
    "build_parser",
    "log_to_stderr",
    "main",
    "wants_fast_allocator",
]
