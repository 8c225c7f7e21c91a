"""The run folder: its names are where training and evaluation write, and the one rule that
finds a run's data (given, else recorded, else the run's own copy or $BLOODCELL_DATA)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.train import tiny_run

from bloodcell.errors import DatasetError
from bloodcell.evaluation.evaluate import evaluate_run, open_run_model
from bloodcell.models.saved import resolve_model_dir
from bloodcell.run_dir import DATA_ENV, RunDir


def test_training_and_evaluation_write_where_the_run_dir_says(tmp_path: Path) -> None:
    run = RunDir(tiny_run(tmp_path, epochs=1))
    for path in (
        run.train_config,
        run.train_summary,
        run.manifest_copy,
        run.log,
        run.curves,
        run.last_checkpoint,
    ):
        assert path.is_file(), path
    assert resolve_model_dir(run.path) == run.model
    evaluate_run(run.path, "test", progress=False)
    assert run.eval_report("test").is_file()
    assert RunDir.of_model(run.model) == run
    _, _, found = open_run_model(run.model)
    assert found == run


def test_a_model_outside_a_run_is_its_own_run(tmp_path: Path) -> None:
    assert RunDir.of_model(tmp_path / "exported") == RunDir(tmp_path / "exported")
    assert RunDir.of_model(str(tmp_path / "run" / "model")).path == tmp_path / "run"


def test_links_are_relative_to_the_linking_file() -> None:
    run = RunDir(Path("runs/latest"))
    assert run.link(run.robustness_png("test")) == "eval/test/robustness.png"
    assert run.link(run.ood_png, run.eval_dir("test")) == "../ood/ood_scores.png"
    assert run.link(run.figures) == "data/figures"
    assert RunDir(Path("..")).ood_png.as_posix() == "../eval/ood/ood_scores.png"


def _recorded(tmp_path: Path) -> tuple[RunDir, dict[str, str]]:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    manifest = tmp_path / "elsewhere.csv"
    manifest.write_text("path,label,split,sha256,group\n")
    return run, {"manifest": str(manifest), "data_root": str(data)}


def test_given_paths_come_first_and_must_exist(tmp_path: Path) -> None:
    run, recorded = _recorded(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("")
    found = run.find_data(recorded, data_root=tmp_path, manifest=other)
    assert (found.root, found.manifest) == (tmp_path, other)
    with pytest.raises(DatasetError, match="manifest not found"):
        run.find_data(recorded, manifest=tmp_path / "nowhere.csv")
    with pytest.raises(DatasetError, match="--data"):
        run.find_data(recorded, data_root=tmp_path / "nowhere")


def test_recorded_manifest_then_the_runs_copy(tmp_path: Path) -> None:
    run, recorded = _recorded(tmp_path)
    found = run.find_data(recorded)
    assert found.manifest == Path(recorded["manifest"])
    assert found.root == Path(recorded["data_root"])
    shutil.copy(recorded["manifest"], run.manifest_copy)
    Path(recorded["manifest"]).unlink()  # the original is gone; the run's copy is not
    assert run.find_data(recorded).manifest == run.manifest_copy
    run.manifest_copy.unlink()
    with pytest.raises(DatasetError, match="--manifest"):
        run.find_data(recorded)


def test_recorded_data_root_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, recorded = _recorded(tmp_path)
    moved = tmp_path / "moved"
    Path(recorded["data_root"]).rename(moved)
    monkeypatch.setenv(DATA_ENV, str(moved))
    assert run.find_data(recorded).root == moved
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(DatasetError, match=DATA_ENV):
        run.find_data(recorded)
    with pytest.raises(DatasetError, match="not recorded"):
        run.find_data({"manifest": recorded["manifest"]})
