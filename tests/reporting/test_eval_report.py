"""The report links its pictures and tells the reader how sure to be."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bloodcell.evaluation.metrics import compute_metrics
from bloodcell.labels import LABELS
from bloodcell.reporting.eval_report import write_eval_report, write_run_report
from bloodcell.reporting.markdown import upsert_section


def test_eval_report_has_pictures_headline_and_sections(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    probs = rng.dirichlet(np.ones(4), size=40) + 2 * np.eye(4)[y]
    probs /= probs.sum(1, keepdims=True)
    m = compute_metrics(y, probs, LABELS) | {"split": "test", "data": {"manifest_sha256": "ab12"}}
    report = write_eval_report(m, y, probs, tmp_path, {"architecture": "mobilenet_v2"})
    text = report.read_text()
    for png in ("confusion_matrix.png", "roc.png", "reliability.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert f"]({png})" in text
    assert "95% CI" in text and "What the interval means" in text
    for section in (
        "Per class",
        "Sensitivity",
        "Specificity",
        "Calibration",
        "ab12",
        "mobilenet_v2",
    ):
        assert section in text
    run_report = write_run_report(tmp_path, {"test": m}, ["extra line"])
    assert "eval/test/report.md" in run_report.read_text()


def test_report_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("# Evaluation\n\n## Headline\n\nx\n\n## Data provenance\n\ny\n")
    upsert_section(path, "Robustness", ["first"])
    upsert_section(path, "Robustness", ["second"])
    text = path.read_text()
    assert text.count("## Robustness") == 1 and "second" in text and "first" not in text
    assert text.index("## Robustness") < text.index("## Data provenance")
