"""Cross-validation on tiny synthetic data: every image tested once with duplicates kept in one
fold, reports and figures, skipping finished folds, folds run as jobs of their own then pooled,
the protocol comparison, and the console script resuming after a real kill."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import make_dataset
from tests.train import tiny_config

from bloodcell.cli import main
from bloodcell.data.manifest import read_manifest, select
from bloodcell.data.split import file_number
from bloodcell.errors import BloodcellError, ModelError
from bloodcell.evaluation.cv_figures import CVSettings
from bloodcell.evaluation.cv_fold import read_predictions
from bloodcell.labels import LABELS
from bloodcell.reporting.cv_report import write_protocol_report
from bloodcell.run_dir import PREDICTIONS_FILE
from bloodcell.workflows.cv_job import (
    compare_protocols,
    compare_protocols_fold,
    run_cv,
    run_cv_fold,
)

BLOODCELL = shutil.which("bloodcell", path=str(Path(sys.executable).parent)) or "bloodcell"
BENIGN = Path("Original/Benign")


def _data(tmp: Path, n_per_class: int = 9) -> Path:
    """Synthetic images plus two byte-identical copies of one benign image."""
    root = make_dataset(tmp / "data", n_per_class=n_per_class, size=32)
    for name in ("benign-900.jpg", "benign-901.jpg"):
        shutil.copy(root / BENIGN / "benign-002.jpg", root / BENIGN / name)
    return root


def _tested(out: Path, seed: int = 0) -> dict[str, list[int]]:
    """path -> the folds whose predictions file holds it."""
    seen: dict[str, list[int]] = {}
    for fold_dir in sorted((out / f"seed-{seed}").iterdir()):
        paths, _, _ = read_predictions(fold_dir / PREDICTIONS_FILE)
        test = [r.path for r in select(read_manifest(fold_dir / "manifest.csv"), "test")]
        assert paths == test  # the predictions are of the fold's own test split
        for p in paths:
            seen.setdefault(p, []).append(int(fold_dir.name.split("-")[1]))
    return seen


def test_cv_tests_every_image_once_reports_and_skips_finished_folds(tmp_path: Path) -> None:
    data = _data(tmp_path)
    out = tmp_path / "cv"
    settings = CVSettings(folds=3, seeds=(0,))
    cv = run_cv(data, out, tiny_config(), settings, progress=False)
    tested = _tested(out)
    assert len(tested) == 4 * 9 + 2 and all(len(f) == 1 for f in tested.values())
    copies = {
        tested[str(BENIGN / n)][0] for n in ("benign-002.jpg", "benign-900.jpg", "benign-901.jpg")
    }
    assert len(copies) == 1  # the duplicate group stayed in one fold
    pooled = cv["seeds"][0]["pooled"]
    assert pooled["n"] == 38 and pooled["accuracy"] >= 0.6  # learnt the colours; chance 0.25
    assert sum(f["n"] for f in cv["seeds"][0]["folds"]) == 38
    for key in ("accuracy", "macro_f1", "sensitivity", "specificity", "ece"):
        lo, hi = pooled["ci95"][key]
        assert lo <= hi
    assert set(pooled["ci95"]["recall"]) == set(LABELS)
    assert cv["data"]["ci_groups"] == 36  # 38 images, one group of three copies
    saved = json.loads((out / "cv.json").read_text())
    assert saved["seeds"][0]["pooled"]["accuracy"] == pooled["accuracy"]
    text = (out / "report.md").read_text()
    assert "| **pooled** | 38 |" in text and "| 3 |" in text
    for png in ("folds.png", "confusion_matrix_seed-0.png"):
        assert f"({png})" in text and (out / png).stat().st_size > 1000
    # every fold's test part is audited, and the audits are pooled
    audit = saved["seeds"][0]["audit"]
    assert audit["original"]["n"] == 38 and audit["swapped"]["n"] > 0
    assert "What the model looks at (pooled over folds)" in text
    # the fold manifests are ordinary manifests that `bloodcell train` can use
    manifest = out / "seed-0" / "fold-2" / "manifest.csv"
    assert {r.split for r in read_manifest(manifest)} == {"train", "val", "test"}
    before = manifest.read_bytes()
    # a rerun skips every finished fold and gives the same figures
    again = run_cv(data, out, tiny_config(), settings, progress=False)
    assert again["folds_trained_now"] == 0 and cv["folds_trained_now"] == 3
    assert again["seeds"] == cv["seeds"] and manifest.read_bytes() == before
    with pytest.raises(ModelError, match="other settings"):
        run_cv(data, out, tiny_config(), CVSettings(folds=2), progress=False)


def test_folds_run_alone_then_pooled_equal_one_command(tmp_path: Path) -> None:
    """What a scheduler's array does: each fold a job of its own (in any order), then the
    whole command, which trains nothing and pools the same figures as one command."""
    data = _data(tmp_path, n_per_class=8)
    settings, config = CVSettings(folds=3, seeds=(0,)), tiny_config(epochs=2)
    whole = run_cv(data, tmp_path / "whole", config, settings, progress=False)
    out = tmp_path / "jobs"
    for k in (3, 1, 2):
        (done,) = run_cv_fold(data, out, config, k, settings, progress=False)
        assert (done.seed, done.fold, done.trained_now) == (0, k, True)
        assert done.predictions == out / "seed-0" / f"fold-{k}" / PREDICTIONS_FILE
        if k == 3:  # a fold job touches its own fold only, and pools nothing
            assert [d.name for d in (out / "seed-0").iterdir()] == ["fold-3"]
            assert not (out / "cv.json").exists()
    (again,) = run_cv_fold(data, out, config, 2, settings, progress=False)
    assert not again.trained_now and again.accuracy == done.accuracy
    pooled = run_cv(data, out, config, settings, progress=False)
    assert pooled["folds_trained_now"] == 0
    for k in (1, 2, 3):
        a, b = (root / "seed-0" / f"fold-{k}" for root in (tmp_path / "whole", out))
        assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
        (pa, ya, qa), (pb, yb, qb) = (read_predictions(d / PREDICTIONS_FILE) for d in (a, b))
        assert pa == pb and (ya == yb).all()
        np.testing.assert_allclose(qb, qa, atol=1e-3)  # trained twice: float noise at most
    w, p = whole["seeds"][0]["pooled"], pooled["seeds"][0]["pooled"]
    assert p["n"] == w["n"] == 34
    assert p["accuracy"] == pytest.approx(w["accuracy"], abs=1 / 34 + 1e-9)
    assert p["ece"] == pytest.approx(w["ece"], abs=0.02)
    # a fold job with other settings than the folder's is refused, as a rerun would be
    with pytest.raises(ModelError, match="other settings"):
        run_cv_fold(data, out, config, 1, CVSettings(folds=2), progress=False)
    with pytest.raises(BloodcellError, match="fold 4 does not exist.*1 to 3"):
        run_cv_fold(data, out, config, 4, settings, progress=False)


def test_a_fold_job_runs_that_fold_of_every_seed(tmp_path: Path) -> None:
    data = _data(tmp_path, n_per_class=6)
    out = tmp_path / "cv"
    settings = CVSettings(folds=2, seeds=(0, 1), val_fraction=0.25)
    done = run_cv_fold(data, out, tiny_config(epochs=1), 2, settings, progress=False)
    assert [(d.seed, d.fold) for d in done] == [(0, 2), (1, 2)]
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("seed-*/fold-*")) == [
        "seed-0/fold-2",
        "seed-1/fold-2",
    ]
    # the seeds make different folds: fold 2 of seed 1 is not fold 2 of seed 0
    tests = [read_predictions(d.predictions)[0] for d in done]
    assert tests[0] != tests[1]


def test_compare_protocols_on_tiny_data(tmp_path: Path) -> None:
    data = _data(tmp_path, n_per_class=24)
    out = tmp_path / "cmp"
    # blocks of 2 file numbers; protocol (d)'s runs are 4 blocks: 8 file numbers
    settings = CVSettings(folds=2, block_size=2, val_fraction=0.25, seeds=(0,))
    # fold 2 of every protocol as a job of its own first; the comparison then trains fold 1
    jobs = compare_protocols_fold(data, out, tiny_config(epochs=2), 2, settings, progress=False)
    assert [(d.name, d.fold, d.trained_now) for d in jobs] == [
        (p, 2, True) for p in ("image", "near", "block", "run")
    ]
    assert not (out / "protocols.json").exists()
    result = compare_protocols(data, out, tiny_config(epochs=2), settings, progress=False)
    rows = {r["protocol"]: r for r in result["protocols"]}
    assert list(rows) == ["image", "near", "block", "run"]
    assert rows["image"]["difference_vs_image"] == 0 and rows["image"]["difference_ci95"] == [0, 0]
    for name, r in rows.items():
        cv = json.loads((out / name / "cv.json").read_text())
        assert cv["settings"]["grouping"] == name and cv["folds_trained_now"] == 1
        assert r["accuracy"] == pytest.approx(cv["seeds"][0]["pooled"]["accuracy"])
        assert r["difference_vs_image"] == pytest.approx(r["accuracy"] - rows["image"]["accuracy"])
        lo, hi = r["difference_ci95"]
        assert lo <= r["difference_vs_image"] <= hi
        assert len(_tested(out / name)) == 98
    # protocols (c) and (d) kept every block of 2 and every run of 8 file numbers of a class
    # folder in one fold
    for name, length in (("block", 2), ("run", 8)):
        by_run: dict[tuple[str, int], set[int]] = {}
        for path, (fold,) in _tested(out / name).items():
            key = (str(Path(path).parent), file_number(path) // length)
            by_run.setdefault(key, set()).add(fold)
        assert all(len(f) == 1 for f in by_run.values()), name
    # the interval resamples runs joined with duplicates: at least the copies of benign-002
    # (benign-900, -901) join run 0 with run 112
    assert result["bootstrap"]["groups"] <= len(by_run) - 1
    assert result["bootstrap"]["unit"].startswith("runs of 8 file numbers")
    text = (out / "report.md").read_text()
    assert "difference vs (a)" in text and "paired" in text and "(protocols.png)" in text
    assert (out / "protocols.png").stat().st_size > 1000
    assert json.loads((out / "protocols.json").read_text())["protocols"] == result["protocols"]
    assert write_protocol_report(result, out) == out / "report.md"


def test_compare_protocols_refuses_a_group(tmp_path: Path, capsys) -> None:
    args = ["cv", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--compare-protocols"]
    assert main([*args, "--group", "block"]) == 2
    assert "leave --group out" in capsys.readouterr().err


def test_console_script_resumes_after_a_kill(tmp_path: Path) -> None:
    """`bloodcell cv` killed once its first fold is done; the same command finishes the rest
    and leaves the finished fold alone."""
    help_text = subprocess.run([BLOODCELL, "cv", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--compare-protocols" in help_text.stdout
    data = _data(tmp_path, n_per_class=8)
    (data / BENIGN / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "cv"
    cmd = [BLOODCELL, "cv", "--data", str(data), "--out", str(out), "--folds", "2",
           "--recipe", "reference", "--epochs", "1", "--image-size", "32", "--batch-size", "8",
           "--no-pretrained", "--val-fraction", "0.2", "--no-calibrate", "-q"]  # fmt: skip
    first = out / "seed-0" / "fold-1" / PREDICTIONS_FILE
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    assert first.exists(), (tmp_path / "first.log").read_text()[-3000:]
    assert not (out / "seed-0" / "fold-2" / PREDICTIONS_FILE).exists()
    assert not (out / "cv.json").exists()
    stamp = (first.stat().st_mtime_ns, (out / "seed-0/fold-1/run/log.csv").stat().st_mtime_ns)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fold 1/2: finished before" in done.stderr
    assert "fold 2/2: training on" in done.stderr
    assert "broken.jpg" in done.stderr  # reported, left out
    assert stamp == (
        first.stat().st_mtime_ns,
        (out / "seed-0/fold-1/run/log.csv").stat().st_mtime_ns,
    )
    assert "seed 0: pooled accuracy" in done.stdout and "95% CI" in done.stdout
    tested = _tested(out)
    assert len(tested) == 34 and all(len(f) == 1 for f in tested.values())
    assert json.loads((out / "cv.json").read_text())["seeds"][0]["pooled"]["n"] == 34


def test_verbose_shows_lightning_while_a_fold_trains(tmp_path: Path, capfd) -> None:
    from tests.cli.test_model_commands import LIGHTNING_LINES, LIGHTNING_SUMMARY

    data = _data(tmp_path)
    settings = CVSettings(folds=3, seeds=(0,), calibrate=False, audit=False)

    def fold(name: str, verbose: bool) -> str:
        out = tmp_path / name
        run_cv_fold(data, out, tiny_config(epochs=1), 1, settings, True, verbose=verbose)
        captured = capfd.readouterr()
        return captured.out + captured.err

    quiet = fold("quiet", verbose=False)
    for text in LIGHTNING_SUMMARY + LIGHTNING_LINES:
        assert text not in quiet, text
    assert "train_loss" not in quiet  # no per-step metrics beside the bar
    verbose = fold("verbose", verbose=True)
    for text in LIGHTNING_SUMMARY + LIGHTNING_LINES:
        assert text in verbose, text
    assert "train_loss" in verbose
