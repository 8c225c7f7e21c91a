"""`bloodcell train` and `bloodcell evaluate` through the console script: a bad option stops
the command before any work, with one line."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bloodcell.cli.model_commands import severity_list
from bloodcell.train.optim import OPTIMIZERS

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def child_cpu_seconds(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd`; its result and the CPU time it used (robust to a busy machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_bad_option_exits_before_any_work_with_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,split,sha256,group\n")
    run = tmp_path / "run"
    out, cpu = child_cpu_seconds(
        [
            str(BLOODCELL),
            "train",
            "--data",
            str(tmp_path),
            "--manifest",
            str(manifest),
            "--out",
            str(run),
            "--optimizer",
            "adamx",
        ]  # fmt: skip
    )
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "--optimizer" in lines[0] and "adamx" in lines[0], out.stderr
    assert all(f"'{name}'" in lines[0] for name in OPTIMIZERS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]  # no run folder
    # quick: it costs what reading the training settings and their registered choices costs
    # (importing bloodcell.train.config and the model registry, which imports torch), and
    # nothing more
    read = "from bloodcell.cli import train_options as t; t.train_fields(); t.registered_choices()"
    _, baseline = child_cpu_seconds([sys.executable, "-c", read])
    assert cpu < baseline + 2.0, (cpu, baseline)


def test_severities_are_parsed_by_the_command_line() -> None:
    assert severity_list("3,1,3") == [1, 3]
    assert severity_list("") is None
    with pytest.raises(argparse.ArgumentTypeError, match="numbers like 1,2,3"):
        severity_list("1,x")


#: What Lightning's model-summary table and its own lines print.
LIGHTNING_SUMMARY = ("Trainable params", "Total params", "Modules in train mode")
LIGHTNING_LINES = ("GPU available", "`Trainer.fit` stopped")


def test_train_shows_lightning_summary_only_with_verbose(tmp_path: Path, capfd) -> None:
    from tests.train import TINY, tiny_data

    from bloodcell.cli import main

    data, manifest = tiny_data(tmp_path, n_per_class=6)
    common = ["--model", TINY, "--no-pretrained", "--epochs", "1", "--image-size", "32"]
    common += ["--batch-size", "8", "--freeze", "finetune", "--workers", "0", "--no-export"]

    def train(name: str, *extra: str) -> str:
        out = tmp_path / name
        args = ["train", "--data", str(data), "--manifest", str(manifest), "--out", str(out)]
        assert main([*args, *common, *extra]) == 0
        captured = capfd.readouterr()
        assert (out / "model" / "config.json").is_file()
        assert f"run: {out}" in captured.out  # bloodcell's own result lines either way
        return captured.out + captured.err

    quiet = train("quiet")
    for text in LIGHTNING_SUMMARY + LIGHTNING_LINES:
        assert text not in quiet, text
    assert "train_loss" not in quiet  # no per-step metrics beside the bar
    assert "Epoch 0" in quiet  # the one bar of the long step

    verbose = train("verbose", "--verbose")
    for text in LIGHTNING_SUMMARY + LIGHTNING_LINES:
        assert text in verbose, text
    assert "train_loss" in verbose
