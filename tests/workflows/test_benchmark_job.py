"""`bloodcell benchmark` end to end on a tiny synthetic dataset: both recipes are trained in their
own processes, evaluated, exported and timed, and the table names every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_dataset


def test_benchmark_compares_recipes_with_the_reference(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", "generic", n_per_class=10, size=32)
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "bloodcell.cli", "benchmark", "--data", str(data),
           "--out", str(out), "--epochs", "1", "--image-size", "32", "--no-pretrained",
           "--seconds", "0.2", "--runs", "3"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "benchmark.json").read_text())
    assert [r["recipe"] for r in record["results"]] == ["reference", "fast"]
    for r in record["results"]:
        assert r["train_wall_s"] > 0 and r["peak_rss_mb"] > 50
        assert 0 <= r["test_accuracy"] <= 1
        assert r["test_ci95"][0] <= r["test_accuracy"] <= r["test_ci95"][1]
    for inf in record["inference"].values():
        for engine in ("torch eager", "onnx fp32", "onnx int8"):
            assert inf[engine]["img_per_s"] > 0 and inf[engine]["latency_ms"] > 0
        assert inf["onnx int8"]["size_mb"] < inf["onnx fp32"]["size_mb"]
    table = (out / "benchmark.md").read_text()
    assert "| reference |" in table and "| fast |" in table and "onnx int8" in table
    assert "| time vs reference |" in done.stdout and "| 1.00x |" in table


def test_verbose_reaches_every_training_command(tmp_path: Path, monkeypatch) -> None:
    """`--verbose` is passed on to each recipe's `bloodcell train`, whose console it changes
    (tests/cli/test_model_commands.py); without it, the training commands stay quiet."""
    import pytest

    import bloodcell.workflows.benchmark_job as bench
    from bloodcell.cli import main

    data = make_dataset(tmp_path / "data", "generic", n_per_class=10, size=32)
    commands: list[list[str]] = []

    def fail(cmd) -> tuple[int, float, float]:  # stop at the first training: seen is enough
        commands.append(list(cmd))
        return 1, 0.0, 0.0

    monkeypatch.setattr(bench, "run_measured", fail)
    args = ["benchmark", "--data", str(data), "--out", str(tmp_path / "bench"), "--epochs", "1"]
    for extra in ([], ["--verbose"]):
        with pytest.raises(RuntimeError, match="training reference seed 0 failed"):
            main([*args, *extra])
    quiet, verbose = commands
    assert quiet[quiet.index("train") :] + ["--verbose"] == verbose[verbose.index("train") :]
