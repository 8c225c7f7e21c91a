"""Large-archive prediction: throughput and peak memory of `bloodcell predict` at two archive sizes.

Usage::

    .venv/bin/python benchmarks/predict_archive.py [--sizes 2000,20000] [--model M.onnx]
        [--workers N] [--batch-size 32] [--dir DIR]

Writes `--sizes` worth of synthetic 224-px smear-like JPEGs (1,000 per folder) into a temporary
folder (or DIR, kept for reruns), then runs the console script on the first N of them for each
size, exactly as a user would::

    bloodcell predict MODEL.onnx FOLDER... --out results.csv --workers N

MODEL defaults to a randomly initialised MobileNetV2 exported to ONNX (speed does not depend on
the weights). Reports images/s (wall time of the whole command, start-up included) and the
command's peak RSS (`wait4` rusage of the child). Streaming means the peak memory must be flat
between the small and the large archive.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PER_FOLDER = 1000
DISTINCT = 256  # distinct images; the rest are byte copies (decoding cost is the same)
BLOODCELL = Path(sys.executable).with_name("bloodcell")


def smear_like(seed: int, size: int = 224) -> Image.Image:
    """A coloured disc over a smooth random background, JPEG-compressible like a real smear."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(150, 250, size=(8, 8, 3), dtype=np.uint8))
    img = np.array(field.resize((size, size), Image.Resampling.BICUBIC))
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    yy, xx = np.ogrid[:size, :size]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 5) ** 2] = rng.integers(40, 220, size=3)
    return Image.fromarray(img)


def make_archive(root: Path, n: int) -> list[Path]:
    """Folders of PER_FOLDER JPEGs each, n in all (kept when already there)."""
    blobs = []
    for i in range(DISTINCT):
        buf = io.BytesIO()
        smear_like(i).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    folders = []
    for f in range((n + PER_FOLDER - 1) // PER_FOLDER):
        d = root / f"slide{f:03d}"
        folders.append(d)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(f * PER_FOLDER, min(n, (f + 1) * PER_FOLDER)):
            p = d / f"img-{i:06d}.jpg"
            if not p.exists():
                p.write_bytes(blobs[i % DISTINCT])
    return folders


def random_onnx(out: Path) -> Path:
    """A randomly initialised MobileNetV2 (224 px) exported as a bloodcell ONNX file."""
    import torch

    from bloodcell.data.preprocess import Preprocess
    from bloodcell.export.onnx import export_onnx
    from bloodcell.models.registry import create_model
    from bloodcell.models.saved import save_model

    torch.manual_seed(0)
    model_dir = save_model(
        create_model("mobilenet_v2", pretrained=False),
        out / "model",
        "mobilenet_v2",
        Preprocess(image_size=224),
    )
    return Path(export_onnx(model_dir, out=out / "model.onnx")["path"])


def run_predict(model: Path, folders: list[Path], out: Path, args: argparse.Namespace) -> dict:
    """Run the console script once; wall time, peak RSS (MB) and rows written."""
    cmd = [
        str(BLOODCELL),
        "predict",
        str(model),
        *map(str, folders),
        "--out",
        str(out),
        "--batch-size",
        str(args.batch_size),
    ]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bloodcell predict failed:\n{stderr[-2000:]}")
    rows = sum(1 for _ in out.open()) - 1
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,20000", help="archive sizes (default 2000,20000)")
    ap.add_argument("--model", type=Path, default=None, help=".onnx (or model dir) to use")
    ap.add_argument("--workers", type=int, default=None, help="bloodcell predict --workers")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", type=Path, default=None, help="keep the images here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bloodcell-archive-") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        folders = make_archive(root / "images", max(sizes))
        print(
            f"{max(sizes)} images in {time.perf_counter() - t0:.0f} s under {root}", file=sys.stderr
        )
        model = args.model or random_onnx(Path(tmp))
        results = []
        for n in sizes:
            r = run_predict(model, folders[: n // PER_FOLDER], Path(tmp) / f"results{n}.csv", args)
            assert r["rows"] == n, r
            r = {"images": n, "images_per_s": round(n / r["seconds"], 1), **r}
            results.append(r)
            print(
                f"{n:>7} images: {r['images_per_s']:>6.1f} img/s ({r['seconds']} s), "
                f"peak RSS {r['peak_rss_mb']} MB",
                file=sys.stderr,
            )
    print(
        json.dumps(
            {
                "model": str(args.model or "random mobilenet_v2 (onnx fp32, 224 px)"),
                "cpu_count": os.cpu_count(),
                "batch_size": args.batch_size,
                "workers": args.workers,
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
