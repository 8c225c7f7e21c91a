"""The model card: written from a real tiny run, consistent with its metrics.json, honest about
what was not measured, and served by the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from tests.models import make_run

from bloodcell.evaluation.calibrate import calibrate_run
from bloodcell.reporting.model_card import not_measured, write_model_card
from bloodcell.run_dir import CARD_FILE
from bloodcell.workflows.evaluate_job import evaluate_robustness, evaluate_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run, calibrated and evaluated on val and test (no robustness, no ood folders)."""
    run = make_run(tmp_path_factory.mktemp("card"))
    calibrate_run(run)
    for split in ("val", "test"):
        evaluate_run(run, split, progress=False)
    return run


def split_card(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_front_matter_matches_metrics(run: Path) -> None:
    path = write_model_card(run)
    assert path == run / "model" / CARD_FILE
    meta, body = split_card(path)
    assert meta["library_name"] == "bloodcell"
    assert meta["license"] and meta["datasets"] and "image-classification" in meta["tags"]
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    results = {r["dataset"]["split"]: r for r in meta["model-index"][0]["results"]}
    assert set(results) == {"test", "val"}
    for split, r in results.items():
        values = {m["type"]: m["value"] for m in r["metrics"]}
        assert values == {
            "accuracy": metrics[split]["accuracy"],
            "f1": metrics[split]["macro_f1"],
        }
    # The body carries the same figures, with their intervals, and every section.
    test = metrics["test"]
    lo, hi = test["ci95"]["accuracy"]
    assert f"{100 * test['accuracy']:.1f}% ({100 * lo:.1f}%–{100 * hi:.1f}%)" in body
    for title in (
        "Intended use",
        "Data and the grouped split",
        "Training recipe",
        "Metrics",
        "Calibration",
        "Robustness",
        "Out of scope",
        "Prediction sets",
        "Known limits",
        "How to cite the data",
    ):
        assert f"\n## {title}\n" in body
    assert "Research use only" in body and "doi:10.34740/KAGGLE/DSV/2175623" in body
    assert "Hematogones against Early Pre-B" in body
    config = json.loads((run / "model" / "config.json").read_text())
    assert f"temperature {config['calibration']['temperature']:.3f}" in body
    assert f"above **{config['ood']['threshold']:.4f}**" in body
    scope = test["out_of_scope"]
    assert f"refused {scope['flagged']} of {scope['n']} images" in body
    counts = test["data"]["counts"]
    totals = " | ".join(str(sum(counts[s].values())) for s in ("train", "val", "test"))
    assert "| class | train | val | test |" in body and f"| total | {totals} |" in body


def test_missing_parts_say_not_measured(run: Path, tmp_path: Path) -> None:
    body = write_model_card(run).read_text()
    assert not_measured("accuracy under stain, light, focus and camera changes "
                        "(`bloodcell evaluate RUN --robustness`)") in body  # fmt: skip
    assert "refusals on folders of other images" in body
    # A model never evaluated nor calibrated: every measured part says it was not measured.
    bare = tmp_path / "bare"
    shutil.copytree(run / "model", bare / "model")
    (bare / "model" / "metrics.json").unlink()
    config = json.loads((bare / "model" / "config.json").read_text())
    del config["calibration"], config["training"]
    (bare / "model" / "config.json").write_text(json.dumps(config))
    _, body = split_card(write_model_card(bare))
    assert body.count("Not measured for this model") >= 6
    assert "accuracy and the other metrics" in body and "calibration (" in body


def test_robustness_table_when_measured(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    r = evaluate_robustness(copy, "test", corruptions="blur", severities=[2], progress=False)
    body = write_model_card(copy).read_text()
    assert "| blur |" in body and f"Clean accuracy {r['clean']['accuracy']:.1%}" in body
    assert "../eval/test/robustness.png" in body


def test_api_serves_the_card(run: Path, tmp_path: Path) -> None:
    from bloodcell.serve.app import create_app

    card = write_model_card(run)
    with TestClient(create_app(run)) as client:
        info = client.get("/v1/model").json()
        assert info["model_card"] == "/v1/model/card"
        r = client.get(info["model_card"])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/markdown")
        assert r.text == card.read_text()
    bare = tmp_path / "bare"
    shutil.copytree(run / "model", bare)
    (bare / CARD_FILE).unlink()
    with TestClient(create_app(bare)) as client:
        assert client.get("/v1/model").json()["model_card"] is None
        r = client.get("/v1/model/card")
        assert r.status_code == 404
        assert "model card" in r.json()["detail"]


def test_card_says_which_engine_auto_runs() -> None:
    """When int8 fails its check the card says that auto runs ONNX fp32, and why."""
    from bloodcell.reporting.card_studies import auto_engine_line

    passed, failed = {"verified": True}, {"verified": False, "deleted": True}
    assert "runs int8" in auto_engine_line({"onnx": passed, "onnx-int8": passed})
    line = auto_engine_line({"onnx": passed, "onnx-int8": failed})
    assert "runs ONNX fp32" in line and "int8 failed the check" in line
    assert "runs torch" in auto_engine_line({"onnx": failed, "onnx-int8": failed})
