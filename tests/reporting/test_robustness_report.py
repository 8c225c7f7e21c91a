"""The robustness section, CSV and plot are drawn from a result alone (as saved in
robustness.json), with the accuracy bar the result records."""

from __future__ import annotations

import csv
from pathlib import Path

from bloodcell.reporting.robustness_report import (
    CSV_FIELDS,
    plot_robustness,
    report_lines,
    write_csv,
)


def _row(corruption: str, severity: int, accuracy: float) -> dict:
    return {
        "corruption": corruption,
        "severity": severity,
        "setting": f"s{severity}",
        "parameter": 0.1 * severity,
        "accuracy": accuracy,
        "accuracy_ci95": [accuracy - 0.1, min(1.0, accuracy + 0.1)],
        "macro_f1": accuracy,
        "balanced_accuracy": accuracy,
        "sensitivity": 1.0,
        "specificity": None,
        "out_of_scope_rate": 0.0,
    }


def _result(target: float) -> dict:
    rows = [_row("blur", 2, 0.9), _row("noise", 2, 0.97)]
    return {
        "split": "test",
        "n": 100,
        "model": "m",
        "backend": "torch",
        "seed": 0,
        "target_accuracy": target,
        "clean": _row("clean", 0, 0.99),
        "results": rows,
        "worst_middle": rows[0],
        "below_target_middle": ["blur"],
    }


def test_report_lines_mark_rows_below_the_recorded_target() -> None:
    text = "\n".join(report_lines(_result(0.95)))
    assert "**s2: 90.0% (F1 0.900)**" in text and "below the 95% target" in text
    assert "1 of 2 corruptions fall below 95%" in text and "![robustness](robustness.png)" in text
    lenient = "\n".join(report_lines(_result(0.85), image="eval/test/robustness.png"))
    assert "**" not in lenient.split("| corruption |")[1] and "85% target" in lenient
    assert lenient.endswith("![robustness](eval/test/robustness.png)")


def test_csv_and_plot(tmp_path: Path) -> None:
    result = _result(0.95)
    write_csv(tmp_path / "r.csv", [result["clean"], *result["results"]])
    with (tmp_path / "r.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_FIELDS and [r["corruption"] for r in rows] == [
        "clean",
        "blur",
        "noise",
    ]
    assert rows[1]["accuracy"] == "0.9000" and rows[1]["specificity"] == ""
    assert plot_robustness(result, tmp_path / "r.png").stat().st_size > 10_000
