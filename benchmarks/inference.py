"""Inference speed on this CPU: torch eager vs ONNX Runtime fp32 vs ONNX Runtime int8.

Usage::

    .venv/bin/python benchmarks/inference.py [MODEL_DIR] [--data DIR] [--threads 2]

MODEL_DIR is a run or model directory (e.g. runs/<name>); without it a randomly initialised
MobileNetV2 at 224 px is built (speed does not depend on the weights). int8 is static QDQ
quantisation calibrated on the run's train split when its data is found, else on synthetic
images (fine for speed, meaningless for accuracy), plus dynamic quantisation for comparison.

Measures, per engine: images/s at batch 32 (mean over timed batches after warm-up), batch-1
latency (median and p90 of many single-image calls), and the model file's size. ONNX Runtime
is tried at several graph optimisation levels and intra-op thread counts.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bloodcell.allocator import current_allocator
from bloodcell.models.fusion import fused_classifier
from bloodcell.workflows.benchmark_job import latency, throughput


def build_random_model(out: Path, size: int) -> Path:
    from bloodcell.data.preprocess import Preprocess
    from bloodcell.models.registry import create_model
    from bloodcell.models.saved import save_model

    torch.manual_seed(0)
    model = create_model("mobilenet_v2", pretrained=False)
    return save_model(model, out, "mobilenet_v2", Preprocess(image_size=size))


def ort_runner(path: Path, level: str, threads: int) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    from bloodcell.models.backends import ONNX_INPUT, onnx_session_options

    so = onnx_session_options(threads)
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {ONNX_INPUT: x})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=None, help="run or model directory")
    ap.add_argument("--data", default=None, help="dataset root (for int8 calibration/accuracy)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per throughput figure")
    ap.add_argument("--runs", type=int, default=100, help="batch-1 calls per latency figure")
    ap.add_argument(
        "--system-malloc",
        action="store_true",
        help="do not re-execute under the tuned glibc allocator the CLI uses",
    )
    args = ap.parse_args(argv)
    _fast_allocator(args.system_malloc)

    from bloodcell.export.onnx import export_fp32, onnx_metadata, quantize_int8, set_metadata
    from bloodcell.models.saved import WEIGHTS_FILE, load_model

    tmp = Path(tempfile.mkdtemp(prefix="bloodcell-bench-"))
    model_dir = Path(args.model) if args.model else build_random_model(tmp / "model", 224)
    loaded = load_model(model_dir)
    size = loaded.preprocess.image_size
    torch.set_num_threads(args.threads)
    print(
        f"model {loaded.path} ({loaded.architecture}, {size} px); torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads, load avg {os.getloadavg()[0]:.1f}, "
        f"allocator {current_allocator()}",
        file=sys.stderr,
    )

    fp32 = export_fp32(loaded, tmp / "model.onnx")
    batches = _calibration(loaded, model_dir, args.data, size)
    int8s = tmp / "model.int8-static.onnx"
    info = quantize_int8(fp32, int8s, batches, "static")
    set_metadata(int8s, onnx_metadata(loaded, info))
    int8d = tmp / "model.int8-dynamic.onnx"
    quantize_int8(fp32, int8d, None, "dynamic")

    rng = np.random.default_rng(0)
    batch = rng.standard_normal((32, 3, size, size), dtype=np.float32)
    one = batch[:1].copy()

    @torch.inference_mode()
    def eager(x: np.ndarray) -> object:
        return loaded.model(torch.from_numpy(x))

    nhwc = copy.deepcopy(loaded.model).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def channels_last(x: np.ndarray) -> object:
        return nhwc(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def channels_last_bf16(x: np.ndarray) -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return channels_last(x)

    folded = fused_classifier(loaded.model).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def channels_last_folded(x: np.ndarray) -> object:  # what TorchBackend runs
        return folded(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    weights = loaded.path / WEIGHTS_FILE
    rows = [
        ("torch eager fp32", eager, weights),
        ("torch channels-last", channels_last, weights),
        ("torch channels-last bf16", channels_last_bf16, weights),
        ("torch CL, BN folded", channels_last_folded, weights),
    ]
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        rows.append((f"onnx fp32 {level[4:].lower()}", ort_runner(fp32, level, args.threads), fp32))
    rows.append(("onnx fp32 all, 1 thread", ort_runner(fp32, "ORT_ENABLE_ALL", 1), fp32))
    rows.append(("onnx int8 static", ort_runner(int8s, "ORT_ENABLE_ALL", args.threads), int8s))
    rows.append(("onnx int8 static, 1 thread", ort_runner(int8s, "ORT_ENABLE_ALL", 1), int8s))
    rows.append(("onnx int8 dynamic", ort_runner(int8d, "ORT_ENABLE_ALL", args.threads), int8d))

    print(f"{'engine':<28} {'img/s @32':>10} {'b1 median ms':>13} {'b1 p90 ms':>10} {'MB':>6}")
    for name, fn, path in rows:
        ips = throughput(fn, batch, args.seconds)
        med, p90 = latency(fn, one, args.runs)
        mb = path.stat().st_size / 1e6
        print(f"{name:<28} {ips:>10.1f} {med:>13.2f} {p90:>10.2f} {mb:>6.1f}", flush=True)
    return 0


def _fast_allocator(skip: bool) -> None:
    """Re-execute once under the allocator `bloodcell predict` runs with, so that torch eager
    is measured as the CLI runs it (see bloodcell.allocator)."""
    from bloodcell.allocator import fast_env

    env = None if skip else fast_env(dict(os.environ))
    if env is not None:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)


def _calibration(loaded, model_dir: Path, data: str | None, size: int) -> list[np.ndarray]:
    """Train-split images of the run when available, else synthetic smear-like images."""
    from bloodcell.errors import BloodcellError
    from bloodcell.evaluation.runs import open_run
    from bloodcell.export.onnx import calibration_batches

    try:
        train = open_run(model_dir, data_root=data).split("train")
        print(f"int8 calibration on the train split under {train.root}", file=sys.stderr)
        return calibration_batches(train.rows, train.root, loaded)
    except BloodcellError:
        print("int8 calibration on synthetic images (speed only)", file=sys.stderr)
    rng = np.random.default_rng(1)
    return [rng.standard_normal((16, 3, size, size), dtype=np.float32) for _ in range(4)]


if __name__ == "__main__":
    sys.exit(main())
