"""predict: mixed good/bad files, JSON/CSV schemas, grouping, TTA invariance, .onnx = dir."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import make_dataset, synthetic_image
from tests.models import IMAGE_SIZE, tiny_model_dir

from bloodcell.cli import main
from bloodcell.labels import LABELS
from bloodcell.models.backends import open_backend
from bloodcell.predict import (
    Prediction,
    csv_header,
    group_by_folder,
    iter_image_paths,
    predict_images,
    predict_paths,
    run_predict,
)

BLOODCELL = Path(sys.executable).with_name("bloodcell")
PRED_KEYS = {"path", "label", "display_name", "confidence", "uncertain", "probabilities", "error",
             "out_of_scope", "ood_score", "prediction_set", "note"}
GROUP_KEYS = {"folder", "n_images", "n_errors", "n_uncertain", "n_out_of_scope", "counts",
              "mean_probabilities"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BLOODCELL), *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def backend():
    return open_backend(tiny_model_dir())


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Two 'slides' of good images plus a corrupt JPEG, a 0-byte file and a text file."""
    root = tmp_path / "smears"
    make_dataset(root / "slide1", "generic", n_per_class=2, size=IMAGE_SIZE)
    make_dataset(root / "slide2", "generic", n_per_class=1, size=IMAGE_SIZE)
    good = (root / "slide1" / "benign" / "benign-000.jpg").read_bytes()
    (root / "slide1" / "benign" / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (root / "slide2" / "pre_b" / "empty.jpg").write_bytes(b"")
    (root / "slide2" / "notes.txt").write_text("not an image\n")
    (root / ".hidden.jpg").write_bytes(b"skipped")
    return root


BAD = {"corrupt.jpg", "empty.jpg", "notes.txt"}


def test_mixed_good_and_bad_files(backend, mixed: Path) -> None:
    missing = mixed / "missing.png"
    batches = list(predict_paths(backend, [mixed, missing], batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 5, 1]  # 12 good + 3 bad + 1 missing, streamed
    preds = [p for b in batches for p in b]
    errors = {Path(p.path).name: p.error for p in preds if not p.ok}
    assert set(errors) == BAD | {"missing.png"}
    assert "truncated" in errors["corrupt.jpg"] or "corrupt" in errors["corrupt.jpg"]
    assert "empty" in errors["empty.jpg"] and "not an image" in errors["notes.txt"]
    assert "no such file" in errors["missing.png"]
    good = [p for p in preds if p.ok]
    assert len(good) == 12
    for p in good:
        assert p.label in LABELS and p.display_name
        assert set(p.probabilities) == set(LABELS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.confidence == max(p.probabilities.values())
        assert p.uncertain == (p.confidence < backend.uncertain_threshold)
    # the tiny model learned the colours: labels follow the class folders
    assert sum(p.label == Path(p.path).parent.name for p in good) >= 10


def test_iter_is_lazy_and_sorted(mixed: Path) -> None:
    it = iter_image_paths([mixed])
    assert iter(it) is it  # a generator: folders are walked as batches are consumed
    paths = list(it)
    folders = list(dict.fromkeys(p.parent for p in paths))
    assert folders == sorted(folders)  # deterministic order, folder by folder
    for f in folders:
        names = [p.name for p in paths if p.parent == f]
        assert names == sorted(names)
    assert len(paths) == 15 and not any(p.name.startswith(".") for p in paths)


def test_uncertain_threshold_override(backend, mixed: Path) -> None:
    def flags(t: float) -> list[bool]:
        return [p.uncertain for b in predict_paths(backend, [mixed], uncertain_threshold=t)
                for p in b if p.ok]
    assert all(flags(1.0)) and not any(flags(0.0))


def test_grouping(backend, mixed: Path) -> None:
    preds = [p for b in predict_paths(backend, [mixed]) for p in b]
    groups = {Path(g["folder"]).relative_to(mixed).as_posix(): g
              for g in group_by_folder(preds, LABELS)}
    assert set(groups) == {"slide1/" + lb for lb in LABELS} | {"slide2/" + lb for lb in LABELS} | {
        "slide2"}
    g = groups["slide1/benign"]
    assert set(g) == GROUP_KEYS
    assert g["n_images"] == 2 and g["n_errors"] == 1 and sum(g["counts"].values()) == 2
    mine = [p for p in preds if p.ok and Path(p.path).parent == mixed / "slide1" / "benign"]
    for lb in LABELS:
        expect = np.mean([p.probabilities[lb] for p in mine])
        assert g["mean_probabilities"][lb] == pytest.approx(expect, abs=1e-6)
    assert groups["slide2"] == {"folder": str(mixed / "slide2"), "n_images": 0, "n_errors": 1,
                                "n_uncertain": 0, "n_out_of_scope": 0,
                                "counts": dict.fromkeys(LABELS, 0),
                                "mean_probabilities": None}


def _circle(size: int = IMAGE_SIZE) -> Image.Image:
    """A centred disc: identical under every flip and 90-degree rotation."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size, 3), 220, np.uint8)
    img[(yy - c) ** 2 + (xx - c) ** 2 <= (size / 4) ** 2] = (60, 60, 200)
    return Image.fromarray(img)


def test_tta_invariance(backend) -> None:
    circle = _circle()
    plain, tta = (predict_images(backend, [circle], tta=t)[0] for t in (False, True))
    for lb in LABELS:
        assert tta.probabilities[lb] == pytest.approx(plain.probabilities[lb], abs=1e-6)
    img = synthetic_image("pro_b", seed=7, size=IMAGE_SIZE)  # not symmetric
    turns = (Image.Transpose.ROTATE_90, Image.Transpose.FLIP_LEFT_RIGHT)
    views = [img, *(img.transpose(t) for t in turns)]
    preds = predict_images(backend, views, tta=True)
    for p in preds[1:]:
        for lb in LABELS:
            assert p.probabilities[lb] == pytest.approx(preds[0].probabilities[lb], abs=1e-6)
    no_tta = predict_images(backend, views[:2])
    assert no_tta[0].probabilities != no_tta[1].probabilities  # so the test above means something


def test_json_schema_cli(mixed: Path) -> None:
    out = cli("predict", str(tiny_model_dir()), str(mixed), "--format", "json",
              "--group-by-folder", "--batch-size", "4")
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
    out = cli("predict", str(tiny_model_dir()), str(mixed), "--out", str(target),
              "--group-by-folder")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0]) == csv_header(LABELS) == [
        "path", "label", "display_name", "confidence", "uncertain",
        "out_of_scope", "ood_score", "prediction_set",
        "prob_benign", "prob_early_pre_b", "prob_pre_b", "prob_pro_b", "error"]
    assert len(rows) == 15
    bad = [r for r in rows if r["error"]]
    assert {Path(r["path"]).name for r in bad} == BAD
    assert all(r["label"] == "" and r["prob_benign"] == "" for r in bad)
    good = [r for r in rows if not r["error"]]
    assert all(r["uncertain"] in ("true", "false") for r in good)
    assert all(abs(sum(float(r[f"prob_{lb}"]) for lb in LABELS) - 1) < 1e-4 for r in good)
    groups = list(csv.DictReader((tmp_path / "out" / "preds.groups.csv").open()))
    assert list(groups[0])[:5] == ["folder", "n_images", "n_errors", "n_uncertain",
                                   "n_out_of_scope"]
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


def test_onnx_gives_same_labels(backend, mixed: Path, tmp_path: Path) -> None:
    from bloodcell.export import export_onnx

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


def test_prediction_to_dict_roundtrip() -> None:
    p = Prediction(path="x.jpg", error="empty file (0 bytes)")
    expect = dict.fromkeys(PRED_KEYS) | {"path": "x.jpg", "error": "empty file (0 bytes)"}
    assert p.to_dict() == expect
