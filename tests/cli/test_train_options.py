"""The training options are TrainConfig's fields: one option per field, checked as parsed."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path
from typing import get_args

import pytest

from bloodcell.cli import build_parser, main
from bloodcell.cli.train_options import SHORTENING, given_settings, train_argv
from bloodcell.train.config import RECIPES, TrainConfig, config_from_options, recipe

#: Options of `bloodcell train` (by dest) that are no TrainConfig field, and why.
NOT_SETTINGS = {
    "data": "where the images are: recorded with the run, not a training setting",
    "manifest": "which split to train on: recorded (and copied) with the run",
    "out": "where the run is written",
    "verbose": "what the console shows while it trains",
    "resume": "continues a run with its saved settings instead of giving new ones",
    "export": "writes the deployable ONNX engines after training: not a training setting",
}
#: TrainConfig fields without a `bloodcell train` option, and why (none at present).
NO_OPTION: dict[str, str] = {}

#: Every option spelling of the training options before they were generated (README, scripts).
KEPT_SPELLINGS = (
    "--recipe --model --no-pretrained --epochs --lr --batch-size --image-size --freeze "
    "--augment --no-augment --seed --workers --device --precision --devices --num-nodes "
    "--strategy --label-smoothing --weight-decay --optimizer --schedule --channels-last "
    "--no-channels-last --feature-cache --no-feature-cache --normalize --stain-norm "
    "--stain-target --feature-aug --no-feature-aug --corrupt-copies --corrupt-severity "
    "--exposure-severity --focus-severity --checkpoint --ood-acceptance"
).split()


def command(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name].ready()


def options(name: str) -> dict[str, argparse.Action]:
    """A command's options by dest (help left out)."""
    return {a.dest: a for a in command(name)._actions if a.dest != "help"}


def test_every_setting_is_an_option_and_every_option_a_setting() -> None:
    settings = {f.name for f in fields(TrainConfig)}
    train = set(options("train"))
    assert settings - train == set(NO_OPTION)
    assert train - settings == set(NOT_SETTINGS)


def test_existing_spellings_are_kept() -> None:
    spelled = {s for a in options("train").values() for s in a.option_strings}
    assert set(KEPT_SPELLINGS) <= spelled
    for name in ("run", "cv"):
        spelled = {s for a in options(name).values() for s in a.option_strings}
        assert {
            "--recipe",
            "--epochs",
            "--image-size",
            "--batch-size",
            "--no-pretrained",
        } <= spelled
        assert {"--workers", "--device"} <= spelled
    spelled = {s for a in options("benchmark").values() for s in a.option_strings}
    assert {"--recipes", "--epochs", "--image-size", "--no-pretrained"} <= spelled


def test_help_texts_state_no_default_the_help_prints_each_recipes() -> None:
    for f in fields(TrainConfig):
        assert "default" not in f.metadata["help"].lower(), f.name
    text = " ".join(command("train").format_help().split())
    ref, fast = RECIPES["reference"], RECIPES["fast"]
    each = ", ".join(f"{name} {r.epochs}" for name, r in RECIPES.items())
    assert f"training epochs (default: the recipe's: {each})" in text
    assert each.startswith(f"reference {ref.epochs}, fast {fast.epochs}")
    assert f"learning rate (default: {ref.lr})" in text and ref.lr == fast.lr


def test_given_options_change_the_recipe_and_nothing_else() -> None:
    args = build_parser().parse_args(
        ["train", "--out", "r", "--freeze", "3", "--no-pretrained", "--epochs", "2"]
    )
    given = given_settings(args)
    assert given == {"freeze": 3, "pretrained": False, "epochs": 2}
    expected = recipe("reference", freeze=3, pretrained=False, epochs=2)
    assert config_from_options(args.recipe, given) == expected
    args = build_parser().parse_args(["run", "--seed", "3", "--epochs", "1"])
    assert given_settings(args, SHORTENING) == {"epochs": 1}  # --seed is run's own


def test_train_argv_gives_the_same_settings_back() -> None:
    settings = {"pretrained": False, "epochs": 1, "image_size": 32, "freeze": "finetune"}
    argv = train_argv(settings)
    assert argv[:3] == ["--no-pretrained", "--epochs", "1"]
    assert given_settings(build_parser().parse_args(["train", "--out", "r", *argv])) == settings


BAD = [
    ("--optimizer", "adamx", ["adam", "adamw", "sgd"]),
    ("--schedule", "linear", ["none", "cosine", "onecycle"]),
    ("--stain-norm", "vahadane", ["none", "macenko", "reinhard"]),
    ("--model", "resnet", ["mobilenet_v2", "vgg19"]),
    ("--freeze", "some", ["frozen", "finetune", "number of blocks"]),
    ("--freeze", "-2", ["frozen", "finetune", "number of blocks"]),
    ("--epochs", "-1", ["at least 1"]),
    ("--device", "gpu", ["auto", "cpu", "cuda", "mps"]),
    ("--precision", "8-bit", ["32-true", "bf16-mixed"]),
    ("--strategy", "dpp", ["auto", "ddp"]),
    ("--ood-acceptance", "1.0", ["below 1"]),
    ("--corrupt-severity", "4", ["1, 2, 3"]),
    ("--checkpoint", "first", ["best", "last"]),
    ("--recipe", "fastest", ["reference", "fast"]),
    ("--stain-target", "/no/such/target.png", ["no such file"]),
]


@pytest.mark.parametrize("option,value,allowed", BAD, ids=[f"{o} {v}" for o, v, _ in BAD])
def test_a_bad_option_is_one_line_naming_it_and_nothing_is_written(
    tmp_path: Path, capsys, option: str, value: str, allowed: list[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path), "--manifest", "m.csv", "--out", str(run)]
    assert main([*argv, option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bloodcell: error: train: ")
    assert re.search(f"argument {option}\\b", err) and all(a in err for a in allowed), err
    assert not run.exists()


def test_precision_choices_are_the_ones_lightning_accepts() -> None:
    """Lightning keeps its list private; ours must not drift from it."""
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    from bloodcell.cli.train_options import _precisions

    lightning = {*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)}
    assert set(_precisions()) == {"auto", *lightning}
