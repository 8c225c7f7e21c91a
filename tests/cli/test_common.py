"""The parser class every command uses: options added on first use, one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from bloodcell.cli.common import Parser, bounded
from bloodcell.errors import BloodcellError


def test_options_are_added_once_and_only_when_needed() -> None:
    calls = []

    def populate(p: Parser) -> None:
        calls.append(p.prog)
        p.add_argument("--late", type=int)

    parser = Parser(prog="bloodcell")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lazy", populate=populate)
    sub.add_parser("other")
    assert parser.parse_args(["other"]).command == "other" and calls == []
    assert "lazy" in parser.format_help() and calls == []
    assert parser.parse_args(["lazy", "--late", "3"]).late == 3
    assert parser.parse_args(["lazy"]).late is None
    assert calls == ["bloodcell lazy"]


def test_errors_are_one_bloodcell_error_naming_the_command() -> None:
    parser = Parser(prog="bloodcell")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve").add_argument("--batch-size", type=bounded(int, 1))
    with pytest.raises(BloodcellError, match=r"^serve: argument --batch-size: must be at least 1"):
        parser.parse_args(["serve", "--batch-size", "0"])
    with pytest.raises(BloodcellError, match=r"^argument command: invalid choice: 'nope'"):
        parser.parse_args(["nope"])


def test_bounded() -> None:
    check = bounded(float, 0, 10_000)
    assert check("5") == 5.0
    for bad in ("-1", "10001", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            check(bad)


def test_building_and_most_commands_need_no_torch() -> None:
    """`bloodcell --help` and the data commands answer at once: the training options, which
    load torch, are added only when a command that trains is parsed."""
    code = (
        "import sys\n"
        "from bloodcell.cli import build_parser\n"
        "p = build_parser()\n"
        "p.parse_args(['data', 'verify', '--data', 'x'])\n"
        "p.format_help()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_python_dash_m_runs_the_command_line() -> None:
    """The allocator re-executes `python -m bloodcell.cli`."""
    out = subprocess.run(
        [sys.executable, "-m", "bloodcell.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("bloodcell ")


def test_predict_formats_are_the_writers() -> None:
    """The predict parser lists its formats literally (no torch at parse time): keep in step."""
    from bloodcell.cli import build_parser
    from bloodcell.predict.writers import FORMATS

    parser = build_parser()
    predict = parser._subparsers._group_actions[0].choices["predict"]  # type: ignore[union-attr]
    fmt = next(a for a in predict._actions if a.dest == "format")
    assert tuple(fmt.choices) == FORMATS


def test_engine_choices_are_the_engines() -> None:
    from bloodcell.cli.common import ENGINE_CHOICES
    from bloodcell.models.engines import ENGINES

    assert ENGINE_CHOICES == ENGINES
