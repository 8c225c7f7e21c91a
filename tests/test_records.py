"""The record types describe the files as written: every key of a real run's train_config.json,
train_summary.json, config.json and metrics.json is declared, and every required one present."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.train import tiny_run

from bloodcell.evaluation.calibrate import calibrate_run
from bloodcell.records import (
    CalibrationRecord,
    ClassMetrics,
    ClinicalMetrics,
    ConformalRecord,
    DataRecord,
    EvalData,
    ImageIntervals,
    ModelConfig,
    ScopeDetectorRecord,
    ScopeMetrics,
    SetLevel,
    SetMetrics,
    SplitMetrics,
    TrainConfigRecord,
    TrainSummary,
)
from bloodcell.run_dir import RunDir
from bloodcell.workflows.evaluate_job import evaluate_run


def _matches(record: dict[str, Any], kind: Any) -> None:
    keys = kind.__required_keys__ | kind.__optional_keys__
    assert set(record) <= keys, set(record) - keys
    assert kind.__required_keys__ <= set(record), kind.__required_keys__ - set(record)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    run = RunDir(tiny_run(tmp_path_factory.mktemp("records"), epochs=1))
    calibrate_run(run.path)
    evaluate_run(run.path, "test", progress=False)
    return run


def test_training_records(run: RunDir) -> None:
    started = json.loads(run.train_config.read_text())
    _matches(started, TrainConfigRecord)
    _matches(started["data"], DataRecord)
    _matches(json.loads(run.train_summary.read_text()), TrainSummary)


def test_model_config(run: RunDir) -> None:
    config = json.loads((run.model / "config.json").read_text())
    _matches(config, ModelConfig)
    assert set(DataRecord.__optional_keys__) == set(config["data"])
    for key, kind in (
        ("calibration", CalibrationRecord),
        ("conformal", ConformalRecord),
        ("ood", ScopeDetectorRecord),
    ):
        _matches(config[key], kind)


def test_metrics(run: RunDir) -> None:
    m = json.loads((run.eval_dir("test") / "metrics.json").read_text())
    assert set(m) == SplitMetrics.__required_keys__ | SplitMetrics.__optional_keys__
    for key, kind in (
        ("ci95", ImageIntervals),
        ("clinical", ClinicalMetrics),
        ("data", EvalData),
        ("out_of_scope", ScopeMetrics),
        ("prediction_sets", SetMetrics),
    ):
        _matches(m[key], kind)
    for row in m["per_class"].values():
        _matches(row, ClassMetrics)
    for row in m["prediction_sets"]["levels"].values():
        _matches(row, SetLevel)
    in_model = json.loads((run.model / "metrics.json").read_text())["test"]
    assert set(m) - set(in_model) == {"calibration_bins", "confusion_matrix"}
