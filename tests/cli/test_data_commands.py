"""`bloodcell data ...` through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import make_dataset

from bloodcell.labels import LABELS

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "KAGGLEHUB_CACHE": "/nonexistent-kagglehub-cache", **(env or {})}
    full_env.pop("BLOODCELL_DATA", None) if env is None else None
    return subprocess.run(
        [str(BLOODCELL), *args], capture_output=True, text=True, env=full_env, timeout=120
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = make_dataset(tmp_path / "d", "mehradaria", n_per_class=10)
    (root / "Original" / "Pro" / "broken.jpg").write_bytes(b"")
    return root


@pytest.mark.parametrize("cmd", ["download", "verify", "split", "show", "cells"])
def test_help(cmd: str) -> None:
    out = run("data", cmd, "--help")
    assert out.returncode == 0 and "usage: bloodcell data " + cmd in out.stdout


def test_verify_summary_and_json(data: Path) -> None:
    out = run("data", "verify", "--data", str(data))
    assert out.returncode == 0, out.stderr
    assert "Malignant Pro-B" in out.stdout and "Original/Pro/broken.jpg: empty" in out.stdout
    assert "verify" in out.stderr  # progress bar
    out = run("data", "verify", "--data", str(data), "--json", "-q")
    report = json.loads(out.stdout)
    assert report["counts"]["pro_b"] == 10 and report["total"] == 40
    assert report["unreadable"] == [
        {"path": "Original/Pro/broken.jpg", "reason": "empty file (0 bytes)"}
    ]


def test_verify_unusable_exits_nonzero(data: Path) -> None:
    for f in (data / "Original" / "Pre").iterdir():
        f.write_bytes(b"x")
    out = run("data", "verify", "--data", str(data), "-q")
    assert out.returncode == 1 and "usable: NO" in out.stdout


def test_env_fallback_and_errors(data: Path, tmp_path: Path) -> None:
    out = run("data", "verify", "-q", env={"BLOODCELL_DATA": str(data)})
    assert out.returncode == 0
    out = run("data", "verify", env={"BLOODCELL_DATA": ""})
    assert out.returncode == 2 and "--data DIR or set BLOODCELL_DATA" in out.stderr
    missing = tmp_path / "missing"
    out = run("data", "verify", "--data", str(missing))
    assert out.returncode == 2 and str(missing) in out.stderr and "Traceback" not in out.stderr


def test_split_then_show(data: Path, tmp_path: Path) -> None:
    m1, m2 = tmp_path / "m1.csv", tmp_path / "m2.csv"
    out = run("data", "split", "--data", str(data), "--out", str(m1), "-q", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "Benign" in out.stdout
    assert "left out: 1" in out.stdout and "broken.jpg" in out.stdout
    run("data", "split", "--data", str(data), "--out", str(m2), "-q", "--seed", "3")
    assert m1.read_bytes() == m2.read_bytes()
    assert m1.read_text().splitlines()[0] == "path,label,split,sha256,group"
    out = run(
        "data",
        "split",
        "--data",
        str(data),
        "--out",
        str(m2),
        "-q",
        "--block-size",
        "5",
        "--ratios",
        "0.6",
        "0.2",
        "0.2",
    )
    assert out.returncode == 0 and "block size 5" in out.stdout
    out = run(
        "data",
        "show",
        "--manifest",
        str(m1),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "figs"),
        "--per-class",
        "2",
    )
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "class_counts.png",
        "samples_test.png",
        "samples_train.png",
    ]


def test_bad_ratios_and_missing_manifest(data: Path, tmp_path: Path) -> None:
    out = run(
        "data",
        "split",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "m.csv"),
        "--ratios",
        "0.5",
        "0.5",
        "0.5",
        "-q",
    )
    assert out.returncode == 2 and "sum to" in out.stderr
    out = run(
        "data",
        "show",
        "--manifest",
        str(tmp_path / "none.csv"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "f"),
    )
    assert out.returncode == 2 and "none.csv" in out.stderr


def test_download_offline_message() -> None:
    out = run("data", "download", "--dataset", "4class")
    if out.returncode == 0:
        pytest.skip("online: the download worked")
    assert out.returncode == 2 and "BLOODCELL_DATA" in out.stderr and "Traceback" not in out.stderr


def test_cells_contact_sheets_skip_an_unreadable_file(data: Path, tmp_path: Path) -> None:
    out = run("data", "cells", "--data", str(data), "--out", str(tmp_path / "sheets"),
              "--per-class", "20")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "broken.jpg" in out.stderr  # reported, and the rest goes on
    names = sorted(p.name for p in (tmp_path / "sheets").iterdir())
    assert names == [f"cells_{lab}.png" for lab in sorted(LABELS)]
