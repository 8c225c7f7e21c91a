"""run: `run_predict` answers alike through a model directory and its .onnx export; shards of
the files, merged, are one run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from tests.models import tiny_model_dir
from tests.predict import BAD, SCORE_FIELDS, SCORE_TOLERANCE, scores_within_tolerance

from bloodcell.data.files import Shard, iter_image_paths
from bloodcell.errors import BloodcellError
from bloodcell.labels import LABELS
from bloodcell.predict.predict_job import run_predict
from bloodcell.predict.stream import predict_paths


def test_onnx_gives_same_labels(backend, mixed: Path, tmp_path: Path) -> None:
    from bloodcell.export.onnx import export_onnx

    onnx_path = Path(export_onnx(tiny_model_dir(), out=tmp_path / "m.onnx")["path"])
    buf = io.StringIO()
    run_predict(onnx_path, [mixed], fmt="json", stdout=buf, progress=False)
    via_onnx = json.loads(buf.getvalue())
    assert via_onnx["model"]["backend"] == "onnx"
    via_dir = [p for b in predict_paths(backend, [mixed]) for p in b]
    assert [p["label"] for p in via_onnx["predictions"]] == [p.label for p in via_dir]
    for a, b in zip(via_onnx["predictions"], via_dir, strict=True):
        if b.ok:
            assert a["confidence"] == pytest.approx(b.confidence, abs=1e-4)


def _rows(fmt: str, text_or_folder: str | Path) -> list[dict[str, Any]]:
    """An output's rows as dicts, scores as floats (CSV cells are text)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in str(text_or_folder).splitlines()]
    if fmt == "json":
        return json.loads(str(text_or_folder))["predictions"]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(text_or_folder).to_pylist()
    rows = list(csv.DictReader(io.StringIO(str(text_or_folder))))
    return [{k: float(v) if k in CSV_SCORES and v else v for k, v in r.items()} for r in rows]


CSV_SCORES = {"confidence", "ood_score", *(f"prob_{lab}" for lab in LABELS)}


def _as_expected(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as another batching's row must look: scores (JSON's, or the CSV and Parquet
    columns) within the tolerance, every other field equal."""
    scores = CSV_SCORES.union(SCORE_FIELDS)
    tol = SCORE_TOLERANCE
    return {
        k: pytest.approx(v, rel=tol, abs=tol) if k in scores and v not in (None, "") else v
        for k, v in row.items()
    }


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "json"])
def test_shards_put_together_are_one_run(backend, mixed: Path, tmp_path: Path, fmt: str) -> None:
    """Three shards, merged as the package docstring says, hold one run's rows in its order;
    batches of 4 make the shards' batches differ from the whole run's."""
    suffix = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "parquet": ".parquet"}[fmt]
    whole = tmp_path / f"all{suffix}"
    run_predict(backend, [mixed], out=whole, batch_size=4, progress=False)
    shards = [tmp_path / f"out-{i}{suffix}" for i in (1, 2, 3)]
    sizes = []
    for i, out in enumerate(shards, start=1):
        totals = run_predict(backend, [mixed], out=out, batch_size=4, progress=False,
                             shard=Shard(i, 3))  # fmt: skip
        sizes.append(totals.n_files)
    n = sum(1 for _ in iter_image_paths([mixed]))
    assert sizes == [b - a for a, b in (Shard(i, 3).bounds(n) for i in (1, 2, 3))]
    assert sum(sizes) == n and min(sizes) >= n // 3  # every file once, near-equal parts
    if fmt == "csv":  # awk 'FNR > 1 || NR == 1' out-{1..3}.csv
        texts = [s.read_text() for s in shards]
        merged = texts[0] + "".join(t.split("\n", 1)[1] for t in texts[1:])
        got = _rows(fmt, merged)
        want = _rows(fmt, whole.read_text())
    elif fmt == "parquet":
        got = [r for s in shards for r in _rows(fmt, s)]
        want = _rows(fmt, whole)
    elif fmt == "jsonl":  # cat out-{1..3}.jsonl
        got = _rows(fmt, "".join(s.read_text() for s in shards))
        want = _rows(fmt, whole.read_text())
    else:
        got = [r for s in shards for r in _rows(fmt, s.read_text())]
        want = _rows(fmt, whole.read_text())
        summaries = [json.loads(s.read_text())["summary"] for s in shards]
        assert [s["n_files"] for s in summaries] == sizes  # each counts its own shard
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert sum(1 for r in want if r["error"]) == len(BAD)  # error rows go to their shard too
    assert got == [_as_expected(r) for r in want]


def test_a_shard_resumes_like_a_whole_run(backend, mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out-2.jsonl"
    run_predict(backend, [mixed], out=out, progress=False, shard=Shard(2, 3))
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:20])  # what a kill in the middle leaves
    totals = run_predict(backend, [mixed], out=out, resume=True, progress=False, shard=Shard(2, 3))
    assert totals.n_skipped == 2 and totals.n_files == len(lines) - 2
    resumed = out.read_text().splitlines(keepends=True)
    assert resumed[:2] == lines[:2]
    want = [scores_within_tolerance(json.loads(line)) for line in lines]
    assert [json.loads(line) for line in resumed] == want


def test_shard_refuses_folder_totals(backend, mixed: Path) -> None:
    with pytest.raises(BloodcellError, match="group-by-folder.*span two shards"):
        run_predict(backend, [mixed], group=True, progress=False, shard=Shard(1, 2))
