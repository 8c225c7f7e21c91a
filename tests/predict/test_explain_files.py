"""explain over files: one figure per image, same-named files kept apart, unreadable files
listed with their problem while the others are written."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from tests.conftest import synthetic_image
from tests.models import tiny_model_dir

from bloodcell.predict.explain_files import run_explain


def test_one_figure_per_image_and_errors_listed(tmp_path: Path) -> None:
    for folder in ("a", "b"):  # the same file name in two folders
        (tmp_path / folder).mkdir()
        synthetic_image("pro_b", seed=len(folder), size=80).save(tmp_path / folder / "cell.png")
    (tmp_path / "b" / "notes.jpg").write_text("not an image")
    results = run_explain(tiny_model_dir(), [tmp_path / "a", tmp_path / "b"], tmp_path / "cam")
    written = {Path(src).relative_to(tmp_path).as_posix(): (out, err) for src, out, err in results}
    assert set(written) == {"a/cell.png", "b/cell.png", "b/notes.jpg"}
    out_a, out_b = written["a/cell.png"][0], written["b/cell.png"][0]
    assert Path(out_a).name == "cell-gradcam.png" and Path(out_b).name == "cell-2-gradcam.png"
    for out in (out_a, out_b):
        with Image.open(out) as im:
            assert im.format == "PNG" and im.width > 80
    assert written["b/notes.jpg"][0] == "" and "not an image" in written["b/notes.jpg"][1]
