"""Whole-folder prediction against the engine alone, over the same images, in one run.

Usage::

    .venv/bin/python benchmarks/predict_folder.py RUN FOLDER [--engine auto] [--batch-size 32]
        [--limit N] [--workers N]

1. The engine alone: every image is decoded and preprocessed first (untimed, with the model's
   own preprocessing, white-cell step included), then only `Backend.score` is timed over the
   batches (calibrated probabilities and out-of-scope scores, batch `--batch-size`), two ways:
   one run at a time over every core, and one single-thread run per core at once (as
   `bloodcell predict` runs a folder). Two passes each; the fastest counts.
2. End to end: the console script, as a user runs it, over the same images::

       bloodcell predict RUN FOLDER --engine E --out results.csv

   timed from starting the process to its exit (start-up, walking the folder, decoding, the
   white-cell finder, preprocessing, the model, the rows and the CSV).

Prints both in images per second and their ratio (end to end / engine alone). With `--limit`,
only the first N images (in the order predict walks them) are used, for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def engine_alone(run: Path, images: list[Path], engine: str, batch_size: int) -> dict:
    """images/s of `Backend.score` alone over the preprocessed images, the faster of two ways
    of using the cores (best of two passes each): one run at a time over every core (ONNX
    Runtime's default), and a batch per core at once on single-thread runs (what
    `bloodcell predict` does for a folder). The reference is the faster of the two, so the
    ratio never credits predict with the engine's own best setting."""
    from concurrent.futures import ThreadPoolExecutor

    from bloodcell.data.files import read_image
    from bloodcell.models.engines import open_model

    ways = {"all cores, one batch": open_model(run, engine)}
    ways["one thread, a batch per core"] = open_model(run, engine, threads=1)
    pre = next(iter(ways.values())).preprocess
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batches.append(np.stack([pre.prepare_array(read_image(p))[0] for p in chunk]))
    results = {}
    for name, backend in ways.items():
        backend.score(batches[0][:2])  # warm-up: the first call allocates
        passes = []
        with ThreadPoolExecutor(backend.concurrent_batches) as pool:
            for _ in range(2):
                t0 = time.perf_counter()
                list(pool.map(backend.score, batches))
                passes.append(time.perf_counter() - t0)
        results[name] = round(len(images) / min(passes), 1)
    best = max(results, key=results.__getitem__)
    return {
        "engine": ways[best].engine,
        "images": len(images),
        "ways": results,
        "best": best,
        "images_per_s": results[best],
    }


def end_to_end(run: Path, folder: Path, engine: str, args: argparse.Namespace) -> dict:
    """The console script over the folder (or the first `--limit` files, listed on the
    command line): wall time from start to exit."""
    with tempfile.TemporaryDirectory(prefix="bloodcell-folder-") as tmp:
        out = Path(tmp) / "results.csv"
        cmd = [str(BLOODCELL), "predict", str(run), str(folder), "--engine", engine]
        cmd += ["--out", str(out), "--batch-size", str(args.batch_size)]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"bloodcell predict failed:\n{proc.stderr.decode()[-2000:]}")
        rows = sum(1 for _ in out.open()) - 1
    return {"rows": rows, "seconds": round(seconds, 2), "images_per_s": round(rows / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run or model directory")
    ap.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="bloodcell predict --workers")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = ap.parse_args(argv)

    from bloodcell.data.files import iter_image_paths

    images = list(iter_image_paths([args.folder]))
    folder = args.folder
    tmp = None
    if args.limit is not None and args.limit < len(images):
        images = images[: args.limit]
        tmp = tempfile.TemporaryDirectory(prefix="bloodcell-limit-")
        folder = Path(tmp.name)
        for i, p in enumerate(images):  # links, not copies: the same files, in the same order
            (folder / f"{i:06d}{p.suffix}").symlink_to(p.resolve())
    print(
        f"{len(images)} images under {args.folder}; {os.cpu_count()} CPUs, load avg "
        f"{os.getloadavg()[0]:.1f}; batch {args.batch_size}",
        file=sys.stderr,
    )
    alone = engine_alone(args.run, images, args.engine, args.batch_size)
    for way, speed in alone["ways"].items():
        print(f"engine alone ({alone['engine']}, preprocessed batches, {way}): {speed:.1f} img/s")
    print(f"engine alone, the faster: {alone['images_per_s']:.1f} img/s", flush=True)
    e2e = end_to_end(args.run, folder, args.engine, args)
    assert e2e["rows"] == len(images), e2e
    ratio = e2e["images_per_s"] / alone["images_per_s"]
    print(
        f"bloodcell predict end to end: {e2e['images_per_s']:.1f} img/s ({e2e['seconds']} s, "
        f"start-up included)",
        flush=True,
    )
    print(f"ratio end to end / engine alone: {ratio:.0%}")
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps({"engine_alone": alone, "end_to_end": e2e, "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
