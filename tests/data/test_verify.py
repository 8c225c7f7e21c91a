"""verify: full decode, unreadable files with reasons, exact and near duplicates."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from tests.conftest import make_dataset

from bloodcell.data.discover import discover
from bloodcell.data.verify import NEAR_THRESHOLD, format_report, near_pairs, verify
from bloodcell.labels import LABELS


def _data(tmp_path: Path, n: int = 4) -> Path:
    return make_dataset(tmp_path / "d", "generic", n_per_class=n)


def test_clean_dataset(tmp_path: Path) -> None:
    report = verify(discover(_data(tmp_path)), progress=False)
    assert report.counts == dict.fromkeys(LABELS, 4) and report.total == 16
    assert report.unreadable == [] and report.usable
    assert report.exact_duplicate_groups == [] and report.near_duplicate_groups == []
    rec = report.records[0]
    assert (rec.width, rec.height) == (64, 64) and len(rec.sha256) == 64 and len(rec.phash) == 16


def test_bad_files_are_listed_and_check_goes_on(tmp_path: Path) -> None:
    root = _data(tmp_path)
    good = (root / "benign" / "benign-000.jpg").read_bytes()
    (root / "benign" / "zero.jpg").write_bytes(b"")
    (root / "benign" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "pre_b" / "garbage.png").write_bytes(b"\x89PNG not really" * 20)
    (root / "pro_b" / "notes.txt").write_text("not an image")
    report = verify(discover(root), progress=False)
    reasons = {u["path"]: u["reason"] for u in report.unreadable}
    assert set(reasons) == {
        "benign/zero.jpg",
        "benign/truncated.jpg",
        "pre_b/garbage.png",
        "pro_b/notes.txt",
    }
    assert "empty" in reasons["benign/zero.jpg"]
    assert "truncated" in reasons["benign/truncated.jpg"]
    assert "not an image" in reasons["pre_b/garbage.png"]
    assert "not an image" in reasons["pro_b/notes.txt"]
    assert report.counts == dict.fromkeys(LABELS, 4) and report.usable
    text = format_report(report)
    assert "benign/truncated.jpg" in text and "unreadable: 4" in text


def test_unusable_when_a_class_has_no_readable_image(tmp_path: Path) -> None:
    root = _data(tmp_path, n=2)
    for f in (root / "pre_b").iterdir():
        f.write_bytes(b"broken")
    report = verify(discover(root), progress=False)
    assert not report.usable and "pre_b" in report.problems[0]
    assert report.to_json()["usable"] is False


def test_exact_duplicates_within_and_across_classes(tmp_path: Path) -> None:
    root = _data(tmp_path)
    shutil.copy(root / "benign" / "benign-001.jpg", root / "benign" / "copy.jpg")
    shutil.copy(root / "pro_b" / "pro_b-002.jpg", root / "pre_b" / "stray.jpg")
    report = verify(discover(root), progress=False)
    assert report.exact_duplicate_groups == [
        ["benign/benign-001.jpg", "benign/copy.jpg"],
        ["pre_b/stray.jpg", "pro_b/pro_b-002.jpg"],
    ]
    assert report.cross_class_groups() == [["pre_b/stray.jpg", "pro_b/pro_b-002.jpg"]]
    assert report.near_duplicate_groups == []  # byte-identical copies are not "near"


def test_near_duplicates_reencoded_and_brightened(tmp_path: Path) -> None:
    root = _data(tmp_path)
    img = Image.open(root / "early_pre_b" / "early_pre_b-001.jpg").convert("RGB")
    ImageEnhance.Brightness(img).enhance(1.08).save(root / "early_pre_b" / "bright.jpg", quality=80)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    (root / "benign" / "reencoded.png").write_bytes(buf.getvalue())
    report = verify(discover(root), progress=False)
    assert report.exact_duplicate_groups == []
    assert report.near_duplicate_groups == [
        ["benign/reencoded.png", "early_pre_b/bright.jpg", "early_pre_b/early_pre_b-001.jpg"]
    ]
    out = report.to_json()
    json.dumps(out)
    assert out["near_threshold"] == NEAR_THRESHOLD
    assert len(out["cross_class_duplicate_groups"]) == 1
    for key in ("counts", "total", "unreadable", "exact_duplicate_groups", "near_duplicate_groups"):
        assert key in out


def test_near_pairs_threshold() -> None:
    base = 0x0F0F_0F0F_0F0F_0F0F
    hashes = [f"{base:016x}", f"{base ^ 0b111:016x}", f"{~base & (2**64 - 1):016x}"]
    assert near_pairs(hashes, 3) == [(0, 1)]
    assert near_pairs(hashes, 2) == []
    assert near_pairs(hashes, 64, chunk=1) == [(0, 1), (0, 2), (1, 2)]


def test_threads_give_same_report(tmp_path: Path) -> None:
    index = discover(_data(tmp_path))
    a = verify(index, progress=False, workers=1).to_json()
    b = verify(index, progress=False, workers=4).to_json()
    assert a == b


def test_unrelated_noise_images_not_merged(tmp_path: Path) -> None:
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    for lab in LABELS:
        (root / lab).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / lab / f"{i}.png")
    assert verify(discover(root), progress=False).near_duplicate_groups == []
