"""Write copies of other labs' cell images at the training images' scale, for
`bloodcell evaluate RUN --ood DIR`: what "refused at the leukemia images' scale" is measured on.

    python benchmarks/at_training_scale.py --src ../shared/data/wbc-types --out /tmp/wbc-scaled \
        --red-cell-px 75

Every image under each subfolder of `--src` is resized by one factor per folder tree, so that
red cells of `--red-cell-px` pixels (the Barcelona crops': `bloodcell.data.scale` measures 70-77
px, median 75) become as large as the training images' (`TRAINING_RED_CELL_PX`), then padded
with its border colour to the model's input size (`data.scale.to_training_scale`). The copies
go to `--out` only, never into the repository (the images may not be redistributed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bloodcell.data.discover import IMAGE_EXTENSIONS
from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.data.scale import Scale, to_training_scale


def write_copies(src: Path, out: Path, red_cell_px: float, size: int = 224) -> int:
    """Resized copies of every image under `src` in the same tree under `out`; their count."""
    scale = Scale(red_cell_px, 0)
    n = 0
    for path in iter_image_paths([src]):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        image, _ = to_training_scale(read_image(path), scale, size)
        target = out / path.relative_to(src).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target)
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, required=True, help="folder of image folders")
    p.add_argument("--out", type=Path, required=True, help="where the copies go")
    p.add_argument(
        "--red-cell-px", type=float, required=True, help="the source images' red-cell diameter"
    )
    args = p.parse_args()
    n = write_copies(args.src, args.out, args.red_cell_px)
    print(f"{n} images at the training scale in {args.out}")


if __name__ == "__main__":
    main()
