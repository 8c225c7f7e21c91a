"""`bloodcell evaluate RUN --ood DIR`: refusals, AUROC and FPR per folder, figures, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.models import IMAGE_SIZE, make_run

from bloodcell.errors import BloodcellError
from bloodcell.evaluation.scope import SECTION_TITLE, evaluate_ood
from bloodcell.run_dir import OOD_JSON, OOD_PNG

BLOODCELL = Path(sys.executable).with_name("bloodcell")


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
    result = evaluate_ood(run, [folder], progress=False)
    (r,) = result["folders"]
    assert r["n"] == 7 and r["flagged"] == 7 and r["flagged_rate"] == 1.0
    assert r["auroc"] == 1.0 and r["fpr_at_95_tpr"] == 0.0
    assert len(r["unreadable"]) == 1 and "notes.txt" in r["unreadable"][0]
    assert result["in_scope"]["n"] == 4  # the tiny run's test split
    out = run / "eval" / "ood"
    assert json.loads((out / OOD_JSON).read_text())["folders"][0]["flagged"] == 7
    assert (out / OOD_PNG).stat().st_size > 1000
    report = (run / "eval" / "test" / "report.md").read_text()
    assert f"## {SECTION_TITLE}" in report and "| 7 | 7 (100.0%) | 1.0000 |" in report


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(BloodcellError, match="not a folder"):
        evaluate_ood(run, [tmp_path / "nowhere"], progress=False)


def test_cli(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    folder = noise_folder(tmp_path / "noise")
    out = subprocess.run(
        [str(BLOODCELL), "evaluate", str(run), "--ood", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"{folder}: 7/7 refused (100.0%), AUROC 1.0000, 1 unreadable" in out.stdout
