"""`bloodcell evaluate` end to end: a run's metrics, pictures and report written where the run
keeps them and the model's own metrics.json kept up to date (the figures themselves:
tests/evaluation/test_metrics.py); robustness under every corruption, seeded, on torch and ONNX;
out-of-scope folders: refusals, AUROC and FPR per folder, figures, report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.models import IMAGE_SIZE, make_run
from tests.train import tiny_run

from bloodcell.cli import main
from bloodcell.data.corruptions import CORRUPTIONS, MIDDLE_SEVERITY
from bloodcell.errors import BloodcellError
from bloodcell.reporting.scope_report import SECTION_TITLE
from bloodcell.run_dir import (
    ROBUSTNESS_CSV,
    ROBUSTNESS_JSON,
    ROBUSTNESS_PNG,
    SCOPE_FOLDERS_JSON,
    SCOPE_FOLDERS_PNG,
)
from bloodcell.workflows.evaluate_job import (
    evaluate_robustness,
    evaluate_run,
    evaluate_scope_folders,
)

BLOODCELL = Path(sys.executable).with_name("bloodcell")


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
    # the model directory's own ONNX file, asked for by engine (as `bloodcell run` studies)
    export_onnx(run)
    c = evaluate_robustness(run, "test", out_dir=tmp_path / "e", engine="onnx", **kw)
    assert c["backend"] == "onnx" and c["model"].endswith("model.onnx")
    assert c["results"][0]["accuracy"] == a["results"][0]["accuracy"]


def test_cli_evaluate_with_robustness(run: Path) -> None:
    res = subprocess.run(
        [str(BLOODCELL), "evaluate", str(run), "--robustness", "--corruptions", "blur,jpeg"],
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


def noise_folder(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"noise-{i}.png")
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (250, 250, 250)).save(root / "flat.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folders_are_scored_against_the_test_split(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    folder = noise_folder(tmp_path / "noise")
    result = evaluate_scope_folders(run, [folder], progress=False)
    (r,) = result["folders"]
    assert r["n"] == 7 and r["flagged"] == 7 and r["flagged_rate"] == 1.0
    assert r["auroc"] == 1.0 and r["fpr_at_95_tpr"] == 0.0
    assert len(r["unreadable"]) == 1 and "notes.txt" in r["unreadable"][0]
    assert result["in_scope"]["n"] == 4  # the tiny run's test split
    out = run / "eval" / "ood"
    assert json.loads((out / SCOPE_FOLDERS_JSON).read_text())["folders"][0]["flagged"] == 7
    assert (out / SCOPE_FOLDERS_PNG).stat().st_size > 1000
    report = (run / "eval" / "test" / "report.md").read_text()
    assert (
        f"## {SECTION_TITLE}" in report and "| 7 | 7 (100.0%) | not trained on | 0.0% |" in report
    )
    assert sum(r["reasons"].values()) == 7  # every refusal with its reason


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(BloodcellError, match="not a folder"):
        evaluate_scope_folders(run, [tmp_path / "nowhere"], progress=False)


def test_cli_evaluate_with_ood_folders(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    folder = noise_folder(tmp_path / "noise")
    out = subprocess.run(
        [str(BLOODCELL), "evaluate", str(run), "--ood", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    line = f"{folder}: 7/7 refused (100.0%), called malignant 0.0%, detector AUROC 1.0000, "
    assert line + "1 unreadable" in out.stdout
