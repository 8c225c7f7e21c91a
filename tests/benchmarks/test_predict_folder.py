"""benchmarks/predict_folder.py runs end to end on a tiny exported model: the engine alone both
ways, then `bloodcell predict` over the same images, and their ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_dataset
from tests.models import IMAGE_SIZE, onnx_run_dir

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_folder.py"


def test_predict_folder_benchmark_smoke(tmp_path: Path) -> None:
    run = onnx_run_dir(tmp_path / "run")
    folder = make_dataset(tmp_path / "images", "generic", n_per_class=3, size=IMAGE_SIZE)
    cmd = [sys.executable, str(SCRIPT), str(run), str(folder), "--batch-size", "4"]
    cmd += ["--limit", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    alone, e2e = figures["engine_alone"], figures["end_to_end"]
    assert alone["images"] == 10 and e2e["rows"] == 10
    assert set(alone["ways"]) == {"all cores, one batch", "one thread, a batch per core"}
    assert alone["images_per_s"] == max(alone["ways"].values()) > 0
    assert figures["ratio"] == round(e2e["images_per_s"] / alone["images_per_s"], 3)
    assert "ratio end to end / engine alone" in proc.stdout
