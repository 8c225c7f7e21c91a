"""benchmarks/startup.py runs end to end on a tiny exported model, in a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import synthetic_image
from tests.models import IMAGE_SIZE, onnx_run_dir

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "startup.py"


def test_startup_benchmark_smoke(tmp_path: Path) -> None:
    run = onnx_run_dir(tmp_path)
    image = tmp_path / "one.png"
    synthetic_image("benign", 3, size=IMAGE_SIZE).save(image)
    out = tmp_path / "startup.json"
    cmd = [sys.executable, str(SCRIPT), str(run), str(image), "--engines", "auto", "--repeats"]
    cmd += ["1", "--serve-timeout", "60", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    (predicted,) = figures["predict"]
    assert predicted["engine"] == "auto" and predicted["answered_by"] == "onnx"
    assert 0 < predicted["wall_s_median"] < 60 and predicted["peak_rss_mb_median"] > 10
    assert figures["serve"]["answered_by"] == "onnx" and 0 < figures["serve"]["health_200_s"] < 60
    imports = figures["imports"]
    assert imports["heavy_imported"] == []  # the ONNX path imports no torch
    assert len(imports["top"]) == 10 and imports["top"][0]["cumulative_us"] > 0
    assert "/health 200 after" in proc.stdout and "top 10" in proc.stdout
