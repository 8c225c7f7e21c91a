"""What `bloodcell explain` does over the user's files: a titled Grad-CAM figure per image.

The heatmap itself is `evaluation.gradcam` (torch, on the model's last block); this module only
walks the files the way `predict` does and writes one PNG each, so an unreadable file is
listed with its problem and the others go on. Imported by the command only: the rest of the
package stays torch-free on the ONNX path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.errors import BloodcellError
from bloodcell.evaluation.gradcam import explain_image, render_figure, torch_backend


def _out_name(path: Path, used: set[str]) -> str:
    name = f"{path.stem}-gradcam.png"
    n = 1
    while name in used:
        n += 1
        name = f"{path.stem}-{n}-gradcam.png"
    used.add(name)
    return name


def run_explain(
    model: str | Path, images: Sequence[str | Path], out_dir: str | Path
) -> list[tuple[str, str, str | None]]:
    """What `bloodcell explain` does: one titled PNG per image in `out_dir`.

    Returns (image, output PNG or "", error or None) per image; unreadable images do not stop
    the others.
    """
    backend = torch_backend(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    results: list[tuple[str, str, str | None]] = []
    for path in iter_image_paths(images):
        try:
            img = read_image(path)
        except BloodcellError as exc:
            results.append((str(path), "", str(exc)))
            continue
        expl = explain_image(backend, img)
        target = out / _out_name(path, used)
        render_figure(img, expl).save(target)
        results.append((str(path), str(target), None))
    return results
