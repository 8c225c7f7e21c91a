"""A run's evaluation end to end: metrics, pictures and report written where the run keeps them,
and the model's own metrics.json kept up to date (the figures themselves: tests/test_metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.train import tiny_run

from bloodcell.evaluation.evaluate import evaluate_run


def test_evaluate_run_writes_metrics_pictures_and_report(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, epochs=2)
    m = evaluate_run(run, "test", progress=False)
    out = run / "eval" / "test"
    for name in (
        "metrics.json",
        "report.md",
        "predictions.csv",
        "confusion_matrix.png",
        "roc.png",
        "reliability.png",
    ):
        assert (out / name).is_file(), name
    assert m["n"] == 8 and m["data"]["matches_training_manifest"]
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    evaluate_run(run / "model", "val", progress=False)
    recorded = json.loads((run / "model" / "metrics.json").read_text())
    assert set(recorded) == {"test", "val"}
    assert recorded["test"]["accuracy"] == m["accuracy"]
