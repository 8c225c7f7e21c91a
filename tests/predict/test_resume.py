"""Large-archive prediction: a run killed with SIGKILL half-way and then resumed has every image
exactly once in its CSV or Parquet output; a JSON Lines output resumed after a cut; plus the
pieces resuming relies on.

What a resumed run promises (`bloodcell.predict.resume`), against one run without a kill: the
rows already written are kept byte for byte; every file is in the output once, in the same
order; every field but the scores is equal (label, display name, uncertain, out_of_scope,
prediction set, note, engine, error); the scores (probabilities, confidence, ood_score) are
equal within `SCORE_TOLERANCE` (1e-4, absolute or relative), not bit for bit, because the
resumed run batches the remaining images differently."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import synthetic_image
from tests.models import tiny_model_dir
from tests.predict import BLOODCELL, scores_within_tolerance

from bloodcell.cli import main
from bloodcell.data.files import iter_image_paths
from bloodcell.errors import BloodcellError
from bloodcell.labels import LABELS
from bloodcell.predict.predict_job import run_predict
from bloodcell.predict.resume import _cut_partial_line

N_IMAGES = 240


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_IMAGES small JPEGs in 4 'slide' folders, plus one corrupt file (an error row)."""
    root = tmp_path_factory.mktemp("archive")
    for i in range(N_IMAGES):
        d = root / f"slide{i % 4}"
        d.mkdir(exist_ok=True)
        synthetic_image(LABELS[i % 4], seed=i, size=32).save(d / f"img-{i:04d}.jpg", quality=90)
    (root / "slide0" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def all_paths(root: Path) -> set[str]:
    return {str(p) for p in iter_image_paths([root])}


def start(model: Path, root: Path, out: Path, *extra: str) -> subprocess.Popen:
    # --tta (8 passes per image) and small batches: slow enough to be killed half-way
    cmd = [
        str(BLOODCELL),
        "predict",
        str(model),
        str(root),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--workers",
        "2",
        "--tta",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()` is true; fail if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "no output appeared in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def csv_rows(path: Path) -> int:
    return max(0, path.read_bytes().count(b"\n") - 1) if path.is_file() else 0


def test_csv_killed_then_resumed_has_every_image_once(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    proc = start(tiny_model_dir(), archive, out)
    kill_when(proc, lambda: csv_rows(out) >= 24)
    before = csv_rows(out)
    assert 24 <= before < N_IMAGES + 1
    with out.open("a", encoding="utf-8") as fh:  # what a kill in the middle of a write leaves
        fh.write(f"{archive / 'slide1' / 'img-0001.jpg'},pre_b,Pre-B,0.9")

    # resumed in-process, without --tta to keep the test short (which rows exist is the point)
    args = [
        "predict",
        str(tiny_model_dir()),
        str(archive),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--resume",
    ]
    assert main(args) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    counts = Counter(r["path"] for r in rows)
    assert set(counts) == all_paths(archive) and max(counts.values()) == 1
    assert len(rows) == N_IMAGES + 1
    broken = [r for r in rows if r["path"].endswith("broken.jpg")]
    assert broken[0]["error"] and not broken[0]["label"]
    # every readable image is answered: a class, or out of scope with none
    answered = [r for r in rows if not r["error"]]
    assert all((r["label"] in LABELS) != (r["out_of_scope"] == "true") for r in answered)

    assert main(args) == 0  # all done: nothing predicted, nothing appended, still success
    assert csv_rows(out) == N_IMAGES + 1


def test_parquet_killed_then_resumed_has_every_image_once(archive: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "results.parquet"
    proc = start(tiny_model_dir(), archive, out, "--parquet-part-rows", "16")
    kill_when(proc, lambda: len(list(out.glob("part-*.parquet"))) >= 2)
    parts = sorted(out.glob("part-*.parquet"))
    before = sum(pq.read_metadata(p).num_rows for p in parts)
    assert 32 <= before < N_IMAGES + 1

    # without --resume an existing dataset is refused, not overwritten
    assert main(["predict", str(tiny_model_dir()), str(archive), "--out", str(out)]) == 2
    assert sorted(out.glob("part-*.parquet")) == parts

    assert (
        main(
            [
                "predict",
                str(tiny_model_dir()),
                str(archive),
                "--out",
                str(out),
                "--batch-size",
                "16",
                "--parquet-part-rows",
                "64",
                "--resume",
            ]
        )
        == 0
    )
    assert not list(out.glob("*.tmp"))
    table = pq.read_table(out)
    counts = Counter(table.column("path").to_pylist())
    assert set(counts) == all_paths(archive) and max(counts.values()) == 1
    assert table.num_rows == N_IMAGES + 1
    assert table.schema.field("confidence").type == "double"
    assert b"bloodcell" in table.schema.metadata
    engines = set(table.column("engine").to_pylist())
    assert engines <= {"torch", "onnx", "onnx-int8", None} and engines - {None}


def test_cut_partial_line(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    for text, expect in [("a,b\n1,2\n3,", "a,b\n1,2\n"), ("a,b\n", "a,b\n"), ("a,", ""), ("", "")]:
        f.write_text(text)
        _cut_partial_line(f, block=2)  # small blocks: the backwards scan crosses blocks
        assert f.read_text() == expect


def test_resume_refuses_what_it_cannot_continue(archive: Path, tmp_path: Path) -> None:
    for kw in (
        {"fmt": "json", "out": tmp_path / "r.json"},
        {"out": None},
        {"out": tmp_path / "r.csv", "group": True},
    ):
        with pytest.raises(BloodcellError, match="resume"):
            run_predict(tiny_model_dir(), [archive], resume=True, progress=False, **kw)


def test_jsonl_cut_mid_line_then_resumed_equals_one_run(mixed: Path, tmp_path: Path) -> None:
    """The resumed output is the one-run output: the kept rows byte for byte, then the same
    files in the same order with the same answers, and scores within the tolerance (the rest
    is predicted in other batches, so their float sums may differ in the 6th decimal)."""
    out = tmp_path / "results.jsonl"
    whole = io.StringIO()
    run_predict(tiny_model_dir(), [mixed], fmt="jsonl", stdout=whole, progress=False)
    lines = whole.getvalue().splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:25])  # what a kill in the middle leaves
    totals = run_predict(tiny_model_dir(), [mixed], out=out, resume=True, progress=False)
    assert totals.n_skipped == 6 and totals.n_files == len(lines) - 6
    resumed = out.read_text().splitlines(keepends=True)
    assert resumed[:6] == lines[:6]  # what the killed run wrote is kept as it was
    assert all(line.endswith("\n") for line in resumed)  # the cut line is gone, rows are whole
    got, want = ([json.loads(line) for line in text] for text in (resumed, lines))
    assert [r["path"] for r in got] == [r["path"] for r in want]  # every file once, in order
    assert got == [scores_within_tolerance(r) for r in want]
    again = run_predict(tiny_model_dir(), [mixed], out=out, resume=True, progress=False)
    assert again.n_files == 0 and again.n_skipped == len(lines)
    assert out.read_text().splitlines(keepends=True) == resumed  # nothing appended


def test_jsonl_resume_refuses_other_content(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    other = {"path": "x.jpg", "probabilities": {"cat": 0.5, "dog": 0.5}}
    for text in ("not json\n", "[1, 2]\n", json.dumps(other) + "\n"):
        out.write_text(text)
        with pytest.raises(BloodcellError, match="cannot resume .*r.jsonl"):
            run_predict(tiny_model_dir(), [mixed], out=out, resume=True, progress=False)
