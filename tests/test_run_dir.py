"""The run folder: its names are where training and evaluation write, and the one rule that
finds a run's data (given, else recorded, else the run's own copy or $BLOODCELL_DATA)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from tests.train import tiny_run

from bloodcell.errors import DatasetError
from bloodcell.evaluation.runs import open_run
from bloodcell.models.saved import resolve_model_dir
from bloodcell.run_dir import DATA_ENV, CvDir, ModelDir, RunDir, atomic, read_json, write_json
from bloodcell.workflows.evaluate_job import evaluate_run


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
    assert open_run(run.model).folder == run


def test_a_model_outside_a_run_is_its_own_run(tmp_path: Path) -> None:
    assert RunDir.of_model(tmp_path / "exported") == RunDir(tmp_path / "exported")
    assert RunDir.of_model(str(tmp_path / "run" / "model")).path == tmp_path / "run"


def test_model_and_cv_folders_name_their_files(tmp_path: Path) -> None:
    run = RunDir(tiny_run(tmp_path, epochs=1))
    model = ModelDir(run.model)
    assert model.weights.is_file() and model.config.is_file()
    assert resolve_model_dir(model.path) == model.path
    fold = CvDir(Path("cv")).protocol("block").fold(seed=1, fold=2)
    assert fold.predictions.as_posix() == "cv/block/seed-1/fold-2/predictions.csv"
    assert fold.run.model.as_posix() == "cv/block/seed-1/fold-2/run/model"
    assert CvDir(Path("cv")).confusion_png(3).name == "confusion_matrix_seed-3.png"


def test_links_are_relative_to_the_linking_file() -> None:
    run = RunDir(Path("runs/latest"))
    assert run.link(run.robustness_png("test")) == "eval/test/robustness.png"
    assert run.link(run.scope_folders_png, run.eval_dir("test")) == "../ood/ood_scores.png"
    assert run.link(run.figures) == "data/figures"
    assert RunDir(Path("..")).scope_folders_png.as_posix() == "../eval/ood/ood_scores.png"


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


def _like_mkstemp(tmp: Path, text: str) -> None:
    """Write `text` the way a library's own atomic save does: a 0o600 mkstemp file renamed
    onto the given path (safetensors' save_file leaves 0o600 so)."""
    fd, name = tempfile.mkstemp(dir=tmp.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(name, tmp)


def test_json_records_are_written_one_way_and_whole(tmp_path: Path) -> None:
    """Indented, keys sorted unless asked not to, a final newline; an object JSON cannot encode
    leaves the old file and no temporary behind."""
    path = write_json(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert read_json(path) == {"a": [1, 2], "b": 1}
    write_json(path, {"b": 1, "a": 2}, sort_keys=False)
    assert list(read_json(path)) == ["b", "a"]
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert read_json(path) == {"b": 1, "a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_files_get_the_mode_of_a_new_file(tmp_path: Path) -> None:
    """A file written atomically has 0o666 less the umask, like any new file, whatever mode
    the temporary had; a block that fails leaves the old file and nothing else."""
    old = os.umask(0o022)
    try:
        for write in (Path.write_text, _like_mkstemp):
            target = tmp_path / f"{write.__name__}.txt"
            with atomic(target) as tmp:
                write(tmp, "new")
            assert target.read_text() == "new"
            assert target.stat().st_mode & 0o7777 == 0o644 == 0o666 & ~0o022, write
        os.umask(0o027)
        with atomic(tmp_path / "group.txt") as tmp:
            _like_mkstemp(tmp, "x")
        assert (tmp_path / "group.txt").stat().st_mode & 0o7777 == 0o640
    finally:
        os.umask(old)
    target = tmp_path / "write_text.txt"
    with pytest.raises(RuntimeError), atomic(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "_like_mkstemp.txt",
        "group.txt",
        "write_text.txt",
    ]
