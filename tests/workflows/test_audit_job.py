"""`bloodcell audit` end to end: audit.json, the picture grid, the report section, the model's
metrics.json and card (the variants themselves: tests/evaluation/test_shortcut_audit.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def test_audit_command_writes_its_outputs(tmp_path: Path):
    from tests.train import tiny_run

    # A registered architecture: the command runs in its own process.
    run = tiny_run(tmp_path, model="mobilenet_v2", image_size=64, epochs=1)
    proc = subprocess.run(
        [str(BLOODCELL), "audit", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = run / "eval" / "test"
    result = json.loads((out / "audit.json").read_text())
    assert {"original", "erased", "alone", "swapped", "corner"} <= set(result["variants"])
    assert (out / "audit.png").stat().st_size > 1000
    assert "## What the model looks at" in (out / "report.md").read_text()
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["audit"]["variants"]["erased"]["n"] == result["variants"]["erased"]["n"]
    assert "What the model looks at" in (run / "model" / "README.md").read_text()


def test_an_audit_on_the_onnx_engine_is_recorded_in_the_model_directory(tmp_path: Path):
    """`bloodcell run` audits on the engine `auto` opens: the model directory records that
    audit (the model card's 'What the model looks at' reads it), naming the engine."""
    from tests.train import tiny_run

    from bloodcell.export.onnx import export_onnx
    from bloodcell.workflows.audit_job import audit_run

    run = tiny_run(tmp_path, model="mobilenet_v2", image_size=64, epochs=1)
    export_onnx(run)
    result = audit_run(run, "test", progress=False, engine="onnx")
    assert result["backend"] == "onnx" and result["model"].endswith("model.onnx")
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["audit"]["backend"] == "onnx"
    assert metrics["audit"]["variants"]["erased"]["n"] == result["variants"]["erased"]["n"]
