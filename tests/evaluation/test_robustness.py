"""Robustness evaluation end to end on a tiny synthetic model (the shared 64-px mobilenet_v2 of
tests.models, so the console script can load it too), in Python, via ONNX and via the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.models import make_run

from bloodcell.cli import main
from bloodcell.data.corruptions import CORRUPTIONS, MIDDLE_SEVERITY
from bloodcell.evaluation.metrics import compute_metrics
from bloodcell.evaluation.robustness import evaluate_robustness, score, worst_middle
from bloodcell.labels import LABELS
from bloodcell.run_dir import ROBUSTNESS_CSV, ROBUSTNESS_JSON, ROBUSTNESS_PNG

CLI = Path(sys.executable).parent / "bloodcell"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("robust"))


def test_every_corruption_and_severity_is_scored_and_written(run: Path) -> None:
    r = evaluate_robustness(run, "test", progress=False)
    out = run / "eval" / "test"
    n_rows = sum(len(c.levels) for c in CORRUPTIONS.values())
    assert len(r["results"]) == n_rows and r["n"] == 4
    assert {x["corruption"] for x in r["results"]} == set(CORRUPTIONS)
    assert all(0 <= x["accuracy"] <= 1 and 0 <= x["macro_f1"] <= 1 for x in r["results"])
    assert r["worst_middle"]["severity"] == MIDDLE_SEVERITY
    saved = json.loads((out / ROBUSTNESS_JSON).read_text())
    assert saved["clean"]["accuracy"] == r["clean"]["accuracy"]
    with (out / ROBUSTNESS_CSV).open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_rows + 1 and rows[0]["corruption"] == "clean"
    assert {"accuracy", "macro_f1", "severity", "setting"} <= set(rows[0])
    assert (out / ROBUSTNESS_PNG).stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert report.count("## Robustness") == 1 and "Worst middle-severity case" in report
    assert f"![robustness]({ROBUSTNESS_PNG})" in report
    for name in CORRUPTIONS:
        assert f"| {name} |" in report


def test_seeded_rerun_gives_the_same_numbers_on_a_subset(run: Path, tmp_path: Path) -> None:
    kw = dict(corruptions="noise,darken", severities=[2], progress=False, batch_size=3)
    a = evaluate_robustness(run, "test", out_dir=tmp_path / "a", **kw)
    b = evaluate_robustness(run, "test", out_dir=tmp_path / "b", **kw)
    assert [x["corruption"] for x in a["results"]] == ["noise", "darken"]
    assert [x["accuracy"] for x in a["results"]] == [x["accuracy"] for x in b["results"]]
    with pytest.raises(ValueError, match="unknown corruption"):
        evaluate_robustness(run, "test", corruptions="sharpen", progress=False)


def test_an_exported_onnx_model_gives_the_torch_numbers(run: Path, tmp_path: Path) -> None:
    from bloodcell.export.onnx import export_onnx

    onnx = export_onnx(run, out=tmp_path / "m.onnx")["path"]
    kw = dict(corruptions="blur", severities=[2], progress=False)
    data = json.loads((run / "model" / "config.json").read_text())["data"]
    a = evaluate_robustness(run, "test", out_dir=tmp_path / "t", **kw)
    b = evaluate_robustness(
        onnx,
        "test",
        data_root=data["data_root"],
        manifest=data["manifest"],
        out_dir=tmp_path / "o",
        **kw,
    )
    assert b["backend"] == "onnx"
    assert b["results"][0]["accuracy"] == a["results"][0]["accuracy"]


def test_worst_middle_picks_the_lowest_middle_accuracy() -> None:
    rows = [
        {"corruption": "a", "severity": 3, "accuracy": 0.1, "macro_f1": 0.1},
        {"corruption": "b", "severity": 2, "accuracy": 0.8, "macro_f1": 0.8},
        {"corruption": "c", "severity": 2, "accuracy": 0.7, "macro_f1": 0.7},
    ]
    assert worst_middle(rows)["corruption"] == "c"
    assert worst_middle(rows[:1]) is None


def test_cli_evaluate_with_robustness(run: Path) -> None:
    res = subprocess.run(
        [str(CLI), "evaluate", str(run), "--robustness", "--corruptions", "blur,jpeg"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "worst middle-severity case" in res.stdout
    saved = json.loads((run / "eval" / "test" / ROBUSTNESS_JSON).read_text())
    assert list(saved["corruptions"]) == ["blur", "jpeg"] and len(saved["results"]) == 6
    assert np.isclose(
        saved["clean"]["accuracy"],
        json.loads((run / "eval" / "test" / "metrics.json").read_text())["accuracy"],
    )


def test_cli_rejects_a_bad_severity_before_any_work(run: Path, capsys) -> None:
    assert main(["evaluate", str(run), "--robustness", "--severities", "5"]) != 0
    assert "severity must be 1-3" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--robustness", "--corruptions", "sharpen"]) != 0
    assert "unknown corruption" in capsys.readouterr().err


def test_score_agrees_with_compute_metrics() -> None:
    rng = np.random.default_rng(4)
    for n in (30, 200):
        y = rng.integers(0, 4, n)
        probs = rng.dirichlet(np.ones(4), n) + 0.5 * np.eye(4)[y]
        full, quick = compute_metrics(y, probs, LABELS, n_boot=10), score(y, probs, LABELS)
        for key in ("accuracy", "macro_f1", "balanced_accuracy"):
            assert quick[key] == pytest.approx(full[key]), key
        assert quick["accuracy_ci95"] == pytest.approx(full["ci95"]["accuracy_wilson"])
        assert quick["sensitivity"] == pytest.approx(full["clinical"]["sensitivity"])
