"""`open_run`: the one way an evaluation step opens a model, its run folder and its data."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.models import export_checked_onnx, make_run

from bloodcell.data.manifest import read_manifest, write_manifest
from bloodcell.errors import DatasetError
from bloodcell.evaluation.runs import open_run
from bloodcell.run_dir import RunDir


def test_a_run_opens_on_torch_with_its_recorded_data(tmp_path: Path) -> None:
    run = open_run(make_run(tmp_path))
    assert run.folder == RunDir(tmp_path / "run")
    assert "backend" not in vars(run)  # nothing loaded until a step asks for the model
    test = run.split("test")
    assert test.rows and all(r.split == "test" for r in test.rows)
    assert test.root == tmp_path / "data"
    assert run.backend.engine == "torch"
    images = run.images("test", progress=False)
    assert len(images.images) == len(test.rows)
    assert [run.backend.labels[k] for k in images.y_true] == [r.label for r in test.rows]


def test_an_empty_split_names_the_manifest(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    manifest = tmp_path / "no-test.csv"
    write_manifest([r for r in read_manifest(path / "manifest.csv") if r.split != "test"], manifest)
    run = open_run(path, manifest=manifest)
    with pytest.raises(DatasetError, match=r"no-test\.csv: the test split is empty"):
        run.split("test")
    assert run.split("val").rows


def test_an_onnx_file_in_a_model_directory_finds_the_runs_data(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    export_checked_onnx(path / "model")
    run = open_run(path / "model" / "model.onnx")
    assert run.backend.engine == "onnx" and run.folder == RunDir(path)
    assert run.split("val").root == tmp_path / "data"
