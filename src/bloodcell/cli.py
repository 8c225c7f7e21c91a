"""The `bloodcell` command line: parses arguments and calls the library, nothing more.

Handlers import their modules lazily so that `bloodcell --help` answers at once.
Each command group lives in its own `_add_*` function below, in pipeline order.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bloodcell import __version__


from bloodcell.errors import BloodcellError

UserError = BloodcellError


def _data_dir(value: str | None) -> Path:
    """Resolve --data, falling back to $BLOODCELL_DATA, with an actionable error."""
    value = value or os.environ.get("BLOODCELL_DATA")
    if not value:
        raise UserError(
            "no dataset folder given: pass --data DIR or set BLOODCELL_DATA=DIR "
            "(run `bloodcell data download` to fetch the Kaggle dataset)"
        )
    return Path(value).expanduser()


def _add_data_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="dataset folder (any supported layout); default: $BLOODCELL_DATA",
    )


# --- data: discover -> verify -> split -> show ------------------------------------------------


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    pass


# --- models, training, evaluation -------------------------------------------------------------


def _weights_import(args: argparse.Namespace) -> int:
    from bloodcell.models.registry import known_weights
    from bloodcell.models.weights import import_weights

    for path in args.files:
        target = import_weights(path, known_weights())
        print(f"{path}: hash verified, cached as {target}")
    return 0


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights", help="manage ImageNet weights (offline import for air-gapped machines)"
    )
    wsub = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    imp = wsub.add_parser(
        "import",
        help="check a local torchvision weights file against its published hash and cache it",
        description="Check FILE against torchvision's published sha256 prefix (the hex digits in "
        "its file name, e.g. mobilenet_v2-b0353104.pth) and copy it into torch's hub cache "
        "($TORCH_HOME/hub/checkpoints), where training finds it without network access.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help="weights file(s), e.g. mobilenet_v2-b0353104.pth")
    imp.set_defaults(func=_weights_import)


# --- use the model: calibrate, predict, explain, export ---------------------------------------


def _add_use_commands(sub: argparse._SubParsersAction) -> None:
    pass


# --- serve ------------------------------------------------------------------------------------


def _add_serve_commands(sub: argparse._SubParsersAction) -> None:
    pass


# --- the main job and benchmarks --------------------------------------------------------------


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloodcell",
        description="Classify B-ALL peripheral blood smear images: verify and split the data "
        "without leakage, train, evaluate, explain, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"bloodcell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_use_commands(sub)
    _add_serve_commands(sub)
    _add_run_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BloodcellError as exc:
        print(f"bloodcell: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bloodcell: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
