"""writers: the JSON, JSON Lines, CSV and table outputs through the CLI and `run_predict`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from tests.models import tiny_model_dir
from tests.predict import BAD, GROUP_KEYS, PRED_KEYS, cli, scores_within_tolerance

from bloodcell.cli import main
from bloodcell.labels import LABELS
from bloodcell.predict.columns import csv_header
from bloodcell.predict.predict_job import run_predict
from bloodcell.predict.records import Prediction
from bloodcell.predict.writers import infer_format


def test_json_schema_cli(mixed: Path) -> None:
    out = cli(
        "predict",
        str(tiny_model_dir()),
        str(mixed),
        "--format",
        "json",
        "--group-by-folder",
        "--batch-size",
        "4",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"model", "tta", "uncertain_threshold", "predictions", "groups", "summary"}
    assert doc["model"]["backend"] == "torch" and doc["model"]["labels"] == list(LABELS)
    assert doc["tta"] is False and doc["uncertain_threshold"] == 0.8
    assert len(doc["predictions"]) == 15
    for p in doc["predictions"]:
        assert set(p) == PRED_KEYS
        if p["error"] is None:
            assert set(p["probabilities"]) == set(LABELS) and isinstance(p["uncertain"], bool)
        else:
            assert p["label"] is None and p["probabilities"] is None
    assert all(set(g) == GROUP_KEYS for g in doc["groups"])
    assert doc["summary"]["n_files"] == 15 and doc["summary"]["n_errors"] == 3
    assert sum(doc["summary"]["counts"].values()) == 12
    assert "15 file(s): 12 predicted" in out.stderr


def test_csv_schema_cli(mixed: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "preds.csv"
    target.parent.mkdir()
    out = cli(
        "predict", str(tiny_model_dir()), str(mixed), "--out", str(target), "--group-by-folder"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    rows = list(csv.DictReader(target.open()))
    assert (
        list(rows[0])
        == csv_header(LABELS)
        == [
            "path",
            "label",
            "display_name",
            "confidence",
            "uncertain",
            "out_of_scope",
            "reason",
            "cells",
            "scale",
            "rescaled",
            "ood_score",
            "prediction_set",
            "prob_benign",
            "prob_early_pre_b",
            "prob_pre_b",
            "prob_pro_b",
            "engine",
            "error",
        ]
    )
    assert len(rows) == 15
    bad = [r for r in rows if r["error"]]
    assert {r["engine"] for r in rows if not r["error"]} == {"torch"}  # nothing exported
    assert {r["engine"] for r in bad} == {""}
    assert {Path(r["path"]).name for r in bad} == BAD
    assert all(r["label"] == "" and r["prob_benign"] == "" for r in bad)
    good = [r for r in rows if not r["error"]]
    assert all(r["uncertain"] in ("true", "false") for r in good)
    assert all(abs(sum(float(r[f"prob_{lb}"]) for lb in LABELS) - 1) < 1e-4 for r in good)
    groups = list(csv.DictReader((tmp_path / "out" / "preds.groups.csv").open()))
    assert list(groups[0])[:5] == [
        "folder",
        "n_images",
        "n_errors",
        "n_uncertain",
        "n_out_of_scope",
    ]
    assert sum(int(g["n_images"]) for g in groups) == 12


def test_table_cli_and_exit_status(mixed: Path, capsys: pytest.CaptureFixture) -> None:
    out = cli("predict", str(tiny_model_dir()), str(mixed / "slide2"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["PREDICTION", "CONF", "FLAG", "PATH"]
    assert "ERROR" in out.stdout and "notes.txt: not an image" in out.stdout
    # in-process (same parser and handler, no interpreter start-up)
    assert main(["predict", str(tiny_model_dir()), str(mixed / "slide2" / "notes.txt")]) == 1
    assert main(["predict", str(mixed), str(mixed)]) == 2
    assert "not a bloodcell model" in capsys.readouterr().err


def _run(mixed: Path, fmt: str, **kw) -> str:
    buf = io.StringIO()
    run_predict(tiny_model_dir(), [mixed], fmt=fmt, stdout=buf, progress=False, batch_size=4, **kw)
    return buf.getvalue()


def test_jsonl_round_trip_matches_the_json_document(mixed: Path) -> None:
    text = _run(mixed, "jsonl")
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 15  # one object per file, nothing else
    rows = [json.loads(line) for line in lines]
    assert all(set(r) == PRED_KEYS for r in rows)
    assert rows == json.loads(_run(mixed, "json"))["predictions"]
    assert [Prediction(**r).to_dict() for r in rows] == rows
    assert {Path(r["path"]).name for r in rows if r["error"]} == BAD


def test_jsonl_groups_beside_the_output_or_after_a_blank_line(mixed: Path, tmp_path: Path) -> None:
    target = tmp_path / "preds.jsonl"
    assert (
        main(
            [
                "predict",
                str(tiny_model_dir()),
                str(mixed),
                "--out",
                str(target),
                "--group-by-folder",
            ]
        )
        == 0
    )
    assert len(target.read_text().splitlines()) == 15
    groups = [json.loads(line) for line in (tmp_path / "preds.groups.jsonl").open()]
    assert all(set(g) == GROUP_KEYS for g in groups)
    assert sum(g["n_images"] for g in groups) == 12
    preds, _, rest = _run(mixed, "jsonl", group=True).partition("\n\n")
    assert len(preds.splitlines()) == 15
    # the same summaries; the mean probabilities within the tolerance (batches of 4, not 32)
    assert [json.loads(line) for line in rest.splitlines()] == [
        scores_within_tolerance(g) for g in groups
    ]


def test_format_from_the_out_suffix() -> None:
    for name, fmt in [
        ("a.csv", "csv"),
        ("a.JSONL", "jsonl"),
        ("a.json", "json"),
        ("a.parquet", "parquet"),
        ("a.txt", "table"),
    ]:
        assert infer_format(None, Path(name)) == fmt
    assert infer_format("csv", Path("a.jsonl")) == "csv" and infer_format(None, None) == "table"
