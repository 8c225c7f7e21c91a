"""`bloodcell run` end to end through the console script, on a tiny synthetic dataset with a
corrupt file (reported and left out); `train` and `evaluate` through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image
from tests.conftest import make_dataset
from tests.train import tiny_data

import bloodcell
from bloodcell.cli import main
from bloodcell.data.manifest import read_manifest

BLOODCELL = shutil.which("bloodcell", path=str(Path(sys.executable).parent)) or "bloodcell"


def test_bloodcell_run_end_to_end(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_per_class=10, size=32)
    (data / "Original" / "Benign" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(other / "blank.png")
    env = dict(os.environ, BLOODCELL_DATA=str(data))
    proc = subprocess.run(
        [
            BLOODCELL,
            "run",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--no-pretrained",
            "--ood",
            str(other),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.jpg" in proc.stderr
    assert f"report:   {out / 'report.md'}" in proc.stdout
    assert "test: accuracy" in proc.stdout and "95% CI" in proc.stdout
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 40 and all("broken" not in r.path for r in rows)
    verify = json.loads((out / "data" / "verify.json").read_text())
    assert [u["path"] for u in verify["unreadable"]] == ["Original/Benign/broken.jpg"]
    for split in ("val", "test"):
        assert (out / "eval" / split / "report.md").is_file()
    assert "eval/test/report.md" in (out / "report.md").read_text()
    assert bloodcell.load(out).architecture == "mobilenet_v2"
    # the default recipe, calibrated on val, with a robustness table for the test split
    summary = json.loads((out / "run_summary.json").read_text())
    assert bloodcell.load(out).config["training"]["recipe"] == "shape"
    pre = bloodcell.load(out).preprocess
    assert pre.cells is not None and pre.lightness  # the cells' shape, not their stain
    assert pre.red_cell_px is not None  # every answer records the image's scale
    assert "audit: cells erased" in proc.stdout and (out / "eval/test/audit.json").is_file()
    assert "## What the model looks at" in (out / "report.md").read_text()
    assert summary["calibration"]["temperature"] > 0
    assert "worst middle-severity case" in proc.stdout
    assert (out / "eval" / "test" / "robustness.csv").is_file()
    assert "## Robustness" in (out / "eval" / "test" / "report.md").read_text()
    top = (out / "report.md").read_text()  # the table is in the run's own report too
    assert "## Robustness" in top and "| brighten |" in top and "| blur |" in top
    assert "(eval/test/robustness.png)" in top and (out / "eval/test/robustness.png").is_file()
    # the model knows its limits: a detector from training, sets from calibration, both reported
    assert (out / "model" / "ood.safetensors").is_file()
    assert summary["out_of_scope"]["test"]["n"] == len([r for r in rows if r.split == "test"])
    test_metrics = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert summary["prediction_sets"] == test_metrics["prediction_sets"]
    assert 0.0 <= summary["prediction_sets"]["levels"]["0.95"]["coverage"] <= 1.0
    assert summary["ood_folders"][0]["flagged"] == 1  # a blank image is never in scope
    assert "## Out of scope (test split)" in top and "## Prediction sets (test split)" in top
    assert "## Out-of-scope folders" in top and "out of scope (test)" in proc.stdout
    card = (out / "model" / "README.md").read_text()  # the model card, from the same figures
    assert card.startswith("---\n") and "## Out of scope" in card and "## Known limits" in card
    # the split figures on torch (the engines' reference); the studies on the engine `auto`
    # opens once the engines are checked (on these tiny images the checks may fail: torch)
    chosen = bloodcell.load(out).engine
    for study in ("eval/test/audit.json", "eval/test/robustness.json", "eval/ood/ood.json"):
        assert json.loads((out / study).read_text())["backend"] == chosen, study
    assert f"Measured on the `{chosen}` engine." in card
    assert "Not measured for this model: whether the answer comes" not in card  # the audit


def test_train_and_evaluate_commands(tmp_path: Path, capsys) -> None:
    data, manifest = tiny_data(tmp_path)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--manifest",
        str(manifest),
        "--model",
        "tiny_cnn_test",
        "--out",
        str(run),
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--freeze",
        "finetune",
        "--no-pretrained",
    ]
    assert main(args) == 0
    assert (run / "model" / "model.safetensors").is_file()
    assert main(args) == 2  # the run exists: asks for --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume"]) == 0  # finished: just re-saves
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "val: accuracy" in out and "report.md" in out
