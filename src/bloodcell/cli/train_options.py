"""Training options made from `TrainConfig`'s fields, so that they cannot drift from it.

Each field becomes `--field-name` with the help text, choices and bounds of its metadata
(booleans become `--x/--no-x`); an option left out keeps the recipe's value, which the help
prints per recipe. Values are checked as they are read (`TrainConfig.check`, the registries), so
a bad one stops the command before any work. Importing `bloodcell.train.config` loads torch
(and, through the package's `__init__`, Lightning), so parsers add these options on first use
(`common.Parser(populate=...)`); Lightning's lists of precisions and strategies are read only
when those options are given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

#: Settings that are not options of their own: `recipe` is the `--recipe` the others change.
NOT_OVERRIDES = frozenset({"recipe"})
#: The options `run` and `cv` offer for quick looks and tests.
SHORTENING = ("epochs", "image_size", "batch_size", "pretrained", "workers", "device")
#: What `run` and `cv` offer besides: the folders of other white cells to train to refuse.
OUTLIER_OPTIONS = ("outliers",)
#: Everything `run` and `cv` offer.
RUN_OPTIONS = (*SHORTENING, *OUTLIER_OPTIONS)
#: Choice lists longer than this show as a metavar in the usage (the error still lists them).
LONG_CHOICES = 6


def registered_choices() -> dict[str, tuple[str, ...]]:
    """The values of settings that plug-ins extend: models, optimizers, schedules, recipes."""
    from bloodcell.models.registry import list_models
    from bloodcell.train.config import RECIPES
    from bloodcell.train.optim import OPTIMIZERS, SCHEDULERS

    return {
        "model": tuple(list_models()),
        "optimizer": tuple(OPTIMIZERS),
        "schedule": tuple(SCHEDULERS),
        "recipe": tuple(RECIPES),
    }


#: The precisions Lightning's Trainer accepts as strings (its own Literal is private), and the
#: short aliases it also takes.
Precision = Literal[
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
]


def _precisions() -> tuple[str, ...]:
    return ("auto", *get_args(Precision))


def _strategies() -> tuple[str, ...]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ("auto", *StrategyRegistry.available_strategies())


#: Settings whose values Lightning defines; importing it takes seconds, so only when given.
LIGHTNING_CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "precision": _precisions,
    "strategy": _strategies,
}


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_fields(names: Iterable[str] | None = None) -> list[Field]:
    """TrainConfig's fields that are options, in `names` order (all of them when None)."""
    from bloodcell.train.config import TrainConfig

    by_name = {f.name: f for f in fields(TrainConfig) if f.name not in NOT_OVERRIDES}
    return list(by_name.values()) if names is None else [by_name[n] for n in names]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "not given" if value is None else str(value)


def recipe_defaults(name: str) -> str:
    """' (default: V)', or each recipe's value where they differ; '' when all leave it unset."""
    from bloodcell.train.config import RECIPES

    values = {r: getattr(c, name) for r, c in RECIPES.items()}
    if len(set(map(repr, values.values()))) == 1:
        value = next(iter(values.values()))
        return "" if value is None else f" (default: {_show(value)})"
    per_recipe = ", ".join(f"{r} {_show(v)}" for r, v in values.items())
    return f" (default: the recipe's: {per_recipe})"


def _kinds(f: Field) -> set[type]:
    """The types a field holds, None left out: `int | None` -> {int}; a tuple of paths
    (`tuple[str, ...]`) -> {tuple}."""
    from bloodcell.train.config import TrainConfig

    hint = get_type_hints(TrainConfig)[f.name]
    if get_origin(hint) is tuple:
        return {tuple}
    return set(get_args(hint)) - {type(None)} or {hint}


def _converter(f: Field) -> Callable[[str], Any]:
    """Text to the field's type; `str | int` (freeze) is a number when it is all digits."""
    kinds = _kinds(f)
    if kinds == {str, int}:
        return lambda text: int(text) if text.isdigit() else text
    (kind,) = kinds
    return kind


def _check(name: str, value: Any, text: str, metavar: str | None) -> None:
    """Raise ValueError when `value` is not allowed for setting `name`."""
    from bloodcell.train.config import TrainConfig

    TrainConfig.check(name, value)
    if name in LIGHTNING_CHOICES and value not in (allowed := LIGHTNING_CHOICES[name]()):
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if metavar == "FILE" and not Path(text).expanduser().is_file():
        raise ValueError(f"no such file: {text}")


def checked(f: Field) -> Callable[[str], Any]:
    """An argparse type for field `f`: converts the text and checks the value."""
    convert = _converter(f)

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        try:
            _check(f.name, value, text, f.metadata.get("metavar"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def add_train_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    names: Sequence[str] | None = None,
) -> None:
    """Add `--x` for each named TrainConfig field (all when None); unset options stay None."""
    registered = registered_choices()
    for f in train_fields(names):
        meta = f.metadata
        text = (meta["help"] + recipe_defaults(f.name)).replace("%", "%%")
        if _kinds(f) == {bool}:
            parser.add_argument(
                option_name(f.name), action=argparse.BooleanOptionalAction, help=text
            )
            continue
        if _kinds(f) == {tuple}:  # folders: one or more values, kept as a tuple
            parser.add_argument(
                option_name(f.name), nargs="+", type=str, metavar=meta.get("metavar"), help=text
            )
            continue
        choices = meta.get("choices") or registered.get(f.name)
        metavar = meta.get("metavar")
        if f.name in LIGHTNING_CHOICES or (choices and len(choices) > LONG_CHOICES):
            metavar = metavar or "NAME"
        parser.add_argument(
            option_name(f.name), type=checked(f), choices=choices, metavar=metavar, help=text
        )


def add_recipe_option(parser: argparse.ArgumentParser, default: str) -> None:
    """`--recipe NAME`: the settings the other training options change."""
    from bloodcell.train.config import TrainConfig

    help_text = TrainConfig.__dataclass_fields__["recipe"].metadata["help"]
    parser.add_argument(
        "--recipe",
        default=default,
        choices=registered_choices()["recipe"],
        help=f"{help_text} (default: {default})",
    )


def given_settings(
    args: argparse.Namespace, names: Iterable[str] | None = None
) -> dict[str, object]:
    """The training settings given on the command line (an option left out is None)."""
    wanted = [f.name for f in train_fields(names)]
    given = {n: getattr(args, n) for n in wanted if getattr(args, n, None) is not None}
    return {n: tuple(v) if isinstance(v, list) else v for n, v in given.items()}


def train_argv(settings: Mapping[str, object]) -> list[str]:
    """Settings written back as `bloodcell train` options, for a training in a child process."""
    argv: list[str] = []
    for name, value in settings.items():
        flag = option_name(name)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple | list):
            if value:
                argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
