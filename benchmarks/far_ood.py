"""Write folders of images far from the training data, for `bloodcell evaluate RUN --ood DIR`.

    python benchmarks/far_ood.py --data ../shared/data/leukemia --out /tmp/far-ood

`pictures/`: scikit-image's sample pictures (a cat, coins, the moon, a page of text, a coffee
cup, a checkerboard, ...). `synthetic/`: noise, flat colours, rendered text, grayscale copies of
smears and rotated 2x2 mosaics of smears (these two from the real data's first images, so they
are written only to `--out`, never into the repository). Every image a model should refuse.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PICTURES = (
    "astronaut", "camera", "cat", "coffee", "coins", "moon", "page", "checkerboard", "chelsea",
    "rocket", "horse", "clock", "text", "immunohistochemistry", "hubble_deep_field", "retina",
    "colorwheel", "logo", "brick", "grass", "gravel",
)  # fmt: skip
FLAT = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 100, 150), (230, 200, 220))


def pictures(out: Path) -> int:
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    for name in PICTURES:
        a = getattr(skimage.data, name)()
        a = a.astype(np.uint8) * 255 if a.dtype == bool else a
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        Image.fromarray(a.astype(np.uint8)).save(out / f"{name}.png")
    return len(PICTURES)


def synthetic(out: Path, smears: list[Path], seed: int = 0) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images: dict[str, Image.Image] = {}
    for i in range(5):
        images[f"noise-{i}"] = Image.fromarray(rng.integers(0, 256, (224, 224, 3), np.uint8))
    for i, colour in enumerate(FLAT):
        images[f"flat-{i}"] = Image.new("RGB", (224, 224), colour)
    text = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(text)
    for k in range(15):
        draw.text((10, 10 + 18 * k), "The quick brown fox jumps over the lazy dog", fill="black")
    images["text"] = text
    for i, path in enumerate(smears[:10]):
        images[f"gray-smear-{i}"] = Image.open(path).convert("L").convert("RGB")
    for j in range(5):
        mosaic = Image.new("RGB", (224, 224))
        for q, path in enumerate(smears[10 + 4 * j : 14 + 4 * j]):
            tile = Image.open(path).convert("RGB").resize((112, 112))
            mosaic.paste(tile, ((q % 2) * 112, (q // 2) * 112))
        images[f"mosaic-{j}"] = mosaic.rotate(45)
    for name, img in images.items():
        img.save(out / f"{name}.png")
    return len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the B-ALL dataset (for gray smears, mosaics)")
    ap.add_argument("--out", required=True, help="folder to write pictures/ and synthetic/ in")
    args = ap.parse_args()
    out = Path(args.out)
    smears = sorted(Path(args.data).rglob("*.jpg"))[:40]
    n_pictures = pictures(out / "pictures")
    print(f"{n_pictures} pictures, {synthetic(out / 'synthetic', smears)} synthetic images")


if __name__ == "__main__":
    main()
