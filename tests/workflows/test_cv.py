"""Cross-validation on tiny synthetic data: every image tested once with duplicates kept in one
fold, reports and figures, skipping finished folds, the protocol comparison, and the console
script resuming after a real kill."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import make_dataset
from tests.train import tiny_config

from bloodcell.cli import main
from bloodcell.data.manifest import read_manifest, select
from bloodcell.data.split import file_number
from bloodcell.errors import ModelError
from bloodcell.evaluation.cv import CVSettings
from bloodcell.evaluation.cv_fold import read_predictions
from bloodcell.labels import LABELS
from bloodcell.reporting.cv_report import write_protocol_report
from bloodcell.run_dir import PREDICTIONS_FILE
from bloodcell.workflows.cv import compare_protocols, run_cv

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


def test_compare_protocols_on_tiny_data(tmp_path: Path) -> None:
    data = _data(tmp_path, n_per_class=8)
    out = tmp_path / "cmp"
    settings = CVSettings(folds=2, block_size=3, val_fraction=0.25, seeds=(0,))
    result = compare_protocols(data, out, tiny_config(epochs=2), settings, progress=False)
    rows = {r["protocol"]: r for r in result["protocols"]}
    assert list(rows) == ["image", "near", "block"]
    assert rows["image"]["difference_vs_image"] == 0 and rows["image"]["difference_ci95"] == [0, 0]
    for name, r in rows.items():
        cv = json.loads((out / name / "cv.json").read_text())
        assert cv["settings"]["grouping"] == name
        assert r["accuracy"] == pytest.approx(cv["seeds"][0]["pooled"]["accuracy"])
        assert r["difference_vs_image"] == pytest.approx(r["accuracy"] - rows["image"]["accuracy"])
        lo, hi = r["difference_ci95"]
        assert lo <= r["difference_vs_image"] <= hi
        assert len(_tested(out / name)) == 34
    # protocol (c) kept every block of 3 file numbers of a class folder in one fold
    by_block: dict[tuple[str, int], set[int]] = {}
    for path, (fold,) in _tested(out / "block").items():
        by_block.setdefault((str(Path(path).parent), file_number(path) // 3), set()).add(fold)
    assert all(len(f) == 1 for f in by_block.values())
    # the interval resamples blocks joined with duplicates: the copies of benign-002
    # (benign-900, -901) join block 0 with block 300
    assert result["bootstrap"]["groups"] == len(by_block) - 1
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
