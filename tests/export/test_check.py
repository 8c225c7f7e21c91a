"""Engines written beside a model and checked: records, refitted int8 threshold, failures
deleted, and `open_model` choosing among them (auto, explicit, fallbacks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.models import make_run

from bloodcell.errors import BloodcellError, ModelError
from bloodcell.export.check import MIN_AGREEMENT, _drop_failed, compare, export_engines, passes
from bloodcell.models.backends import Outputs
from bloodcell.models.engines import ENGINE_FILES, ENGINES, check_engine, open_model
from bloodcell.run_dir import METRICS_FILE


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run = make_run(tmp_path_factory.mktemp("engines"))
    return run, export_engines(run)


def test_records_written_into_metrics(checked: tuple[Path, dict]) -> None:
    run, records = checked
    stored = json.loads((run / "model" / METRICS_FILE).read_text())["engines"]
    assert stored == json.loads(json.dumps(records))
    assert records["checked_on"] == "val+test" and str(MIN_AGREEMENT * 100) in records["tolerance"]
    for engine, reference in (("onnx", "torch"), ("onnx-int8", "onnx")):
        r = records[engine]
        assert r["reference"] == reference and r["file"] == ENGINE_FILES[engine]
        assert r["val"]["n"] == 8 and r["test"]["n"] == 4  # the tiny run's splits
        assert r["verified"] == passes([r["val"], r["test"]])
        assert (run / "model" / r["file"]).is_file() == r["verified"]
    # fp32 is the same network: the same labels and the same refusals as torch.
    assert records["onnx"]["val"]["labels_changed"] == 0
    assert records["onnx"]["val"]["scope_changed"] == 0
    assert records["onnx"]["val"]["answers_changed"] == 0
    assert records["onnx-int8"]["ood"]["acceptance"] == 0.99


def test_auto_takes_the_fastest_checked_engine(checked: tuple[Path, dict]) -> None:
    run, records = checked
    expected = next(e for e in ("onnx-int8", "onnx") if records[e]["verified"])
    backend = open_model(run)
    assert backend.engine == expected
    assert open_model(run, "torch").engine == "torch"
    if expected == "onnx-int8":  # its own threshold, refitted on its own validation scores
        assert backend.ood_threshold == pytest.approx(records["onnx-int8"]["ood"]["threshold"])


def test_a_lone_engine_file_answers_as_its_model_directory(checked: tuple[Path, dict]) -> None:
    """Each kept file carries the thresholds its engine uses in the directory (int8 its own
    refitted out-of-scope threshold), so the file alone gives the same answers."""
    run, records = checked
    for engine in ("onnx", "onnx-int8"):
        if not records[engine]["verified"]:
            continue
        alone = open_model(run / "model" / ENGINE_FILES[engine])
        in_dir = open_model(run, engine)
        assert alone.ood_threshold == pytest.approx(in_dir.ood_threshold)
        assert alone.cell_gate == in_dir.cell_gate and alone.temperature == in_dir.temperature


def test_auto_falls_back(checked: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(checked[0], run)
    model = run / "model"
    (model / ENGINE_FILES["onnx-int8"]).write_bytes(b"not an onnx file")
    assert open_model(run).engine == "onnx"  # int8 cannot load: the next engine
    (model / ENGINE_FILES["onnx"]).unlink()
    assert open_model(run).engine == "torch"  # nothing left: torch
    with pytest.raises(ModelError, match="bloodcell export"):
        open_model(run, "onnx")


def test_auto_ignores_checks_of_other_weights(checked: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(checked[0], run)
    from safetensors.torch import load_file, save_file

    weights = run / "model" / "model.safetensors"
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1e-3  # retrained: not the weights the check was made on
    save_file(state, weights)
    assert open_model(run).engine == "torch"


def test_no_check_no_onnx(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert open_model(run).engine == "torch"
    with pytest.raises(ModelError, match="--quantize int8"):
        open_model(run, "onnx-int8")


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(BloodcellError, match="auto, torch, onnx, onnx-int8"):
        check_engine("tensorrt")
    assert all(check_engine(e) == e for e in ENGINES)


def test_failed_engine_is_deleted(tmp_path: Path) -> None:
    for name in ENGINE_FILES.values():
        (tmp_path / name).write_bytes(b"x")
    ok = {"n": 10, "labels_changed": 0, "answers_changed": 0, "extra_errors": 0}
    bad = {"n": 10, "labels_changed": 1, "answers_changed": 1, "extra_errors": 3}
    records = {
        "onnx": {"file": ENGINE_FILES["onnx"], "verified": passes([ok])},
        "onnx-int8": {"file": ENGINE_FILES["onnx-int8"], "verified": passes([bad])},
    }
    _drop_failed(tmp_path, records)
    assert (tmp_path / ENGINE_FILES["onnx"]).is_file()
    assert not (tmp_path / ENGINE_FILES["onnx-int8"]).exists()
    assert records["onnx-int8"]["deleted"] is True


def test_compare_counts_changes_and_errors() -> None:
    eye = np.eye(4, dtype=np.float32)
    reference = Outputs(eye[[0, 1, 2, 3]])
    candidate = Outputs(eye[[0, 1, 2, 0]])
    check = compare(candidate, reference, np.array([0, 1, 2, 3]))
    assert check["agreement"] == 0.75 and check["labels_changed"] == 1
    assert check["accuracy"] == 0.75 and check["reference_accuracy"] == 1.0
    assert check["extra_errors"] == 1 and not passes([check])


def test_a_changed_refusal_fails_like_a_changed_label() -> None:
    """Answers are classes or refusals: an engine that refuses one image more than its
    reference in 150, with the same labels, fails; the splits count together."""
    val = {"n": 100, "labels_changed": 0, "answers_changed": 1, "extra_errors": 0}
    test = {"n": 50, "labels_changed": 0, "answers_changed": 0, "extra_errors": 0}
    assert not passes([val, test])
    assert passes([{**val, "n": 200}, test])  # 1 in 250 is within 0.5%
    assert not passes([])


def test_answers_are_classes_or_refusals() -> None:
    """Out of scope at the engine's own threshold, or refused by the cell-type gate: -1."""
    from bloodcell.export.check import SplitOutputs, answers
    from bloodcell.models.cell_gate import CellGate

    logits = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0.1, 0, 0, 0]], dtype=np.float32)
    out = SplitOutputs({"e": Outputs(logits, np.array([0.1, 0.9, 0.1]))}, np.zeros(3))
    gate = CellGate(threshold=0.5, acceptance=0.995)
    assert answers(out, "e", {"e": 0.5}, gate).tolist() == [0, -1, -1]
    assert answers(out, "e", {"e": None}, None).tolist() == [0, 1, 0]
