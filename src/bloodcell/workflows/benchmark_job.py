"""`bloodcell benchmark`: training and inference figures for each recipe, in one run, one table.

The reference recipe (the Keras notebook's settings) always runs beside the others on the same
machine and the same grouped split, so every figure can be read as a ratio to it.

Per recipe and seed: training wall time (the whole `bloodcell train` process, including start-up
and feature caching), training images/s (train images x epochs / wall time), peak resident
memory of the training process, and test accuracy with its 95% bootstrap interval, macro-F1 and
the lowest per-class recall, and the worst test accuracy under the robustness corruptions at
their middle severity (`bloodcell.evaluation.robustness`). Per recipe (first seed): images/s
at batch 32 and batch-1 latency for torch eager, ONNX Runtime fp32 and ONNX Runtime int8
(static), the model file sizes, and the int8 model's test accuracy.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bloodcell.allocator import current_allocator
from bloodcell.records import RobustnessResult, SplitMetrics, TrainConfigRecord, TrainSummary
from bloodcell.records.benchmark_records import (
    BenchmarkRecord,
    EngineSpeed,
    InferenceFigures,
    MeasuredTraining,
    RecipeResult,
    ScopeFigures,
)
from bloodcell.run_dir import MANIFEST_COPY, RunDir, read_json, write_json

log = logging.getLogger(__name__)

#: What `run_measured` found for a recipe's training process, kept in its run folder.
MEASURED_FILE = "benchmark_train.json"


# --- timing helpers -------------------------------------------------------------------------------


def throughput(fn: Callable[[np.ndarray], object], batch: np.ndarray, seconds: float) -> float:
    """Images per second over repeated calls on `batch` for about `seconds`, after warm-up."""
    for _ in range(2):
        fn(batch)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        fn(batch)
        n += 1
    return n * len(batch) / (time.perf_counter() - start)


def latency(fn: Callable[[np.ndarray], object], one: np.ndarray, runs: int) -> tuple[float, float]:
    """Median and p90 latency in ms of `runs` single-image calls, after warm-up."""
    for _ in range(5):
        fn(one)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(one)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def run_measured(cmd: Sequence[str]) -> tuple[int, float, float]:
    """Run a command; return (exit code, wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024


# --- the steps ---------------------------------------------------------------------------------


def train_recipe(
    recipe: str,
    seed: int,
    data_root: Path,
    manifest: Path,
    out: Path,
    extra: Sequence[str] = (),
    scope_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
) -> RecipeResult:
    """Train one recipe in its own process (so its peak memory is its own), then evaluate it;
    `verbose` shows Lightning's own console output while it trains."""
    from bloodcell.data.corruptions import MIDDLE_SEVERITY
    from bloodcell.data.manifest import read_manifest, select
    from bloodcell.evaluation.calibrate import calibrate_run
    from bloodcell.workflows.evaluate_job import evaluate_robustness, evaluate_run

    run = RunDir(out / f"{recipe}-seed{seed}")
    if not run.model.is_dir():
        cmd = [sys.executable, "-m", "bloodcell.cli", "train", "--data", str(data_root),
               "--manifest", str(manifest), "--out", str(run.path), "--recipe", recipe,
               "--seed", str(seed), *extra, *(["--verbose"] if verbose else [])]  # fmt: skip
        log.info("benchmark: training %s (seed %s) -> %s", recipe, seed, run.path)
        code, wall, rss = run_measured(cmd)
        if code != 0:
            raise RuntimeError(f"training {recipe} seed {seed} failed (exit {code})")
        done: MeasuredTraining = {"wall_s": wall, "peak_rss_mb": rss}
        write_json(run.path / MEASURED_FILE, done)
    measured: MeasuredTraining = read_json(run.path / MEASURED_FILE)
    summary: TrainSummary = read_json(run.train_summary)
    started: TrainConfigRecord = read_json(run.train_config)
    calibrate_run(run.path)
    metrics = evaluate_run(run.path, "test", progress=False)
    robust = evaluate_robustness(run.path, "test", severities=[MIDDLE_SEVERITY], progress=False)
    worst = robust["worst_middle"]
    n_train = len(select(read_manifest(manifest), "train"))
    return {
        **scope_figures(run.path, metrics, robust, scope_dirs),
        "recipe": recipe,
        "seed": seed,
        "run": str(run.path),
        "train_wall_s": measured["wall_s"],
        "feature_s": summary.get("feature_seconds"),
        "fit_s": summary.get("fit_seconds"),
        "train_img_per_s": n_train * started["config"]["epochs"] / measured["wall_s"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "test_accuracy": metrics["accuracy"],
        "test_ci95": metrics["ci95"]["accuracy"],
        "test_macro_f1": metrics["macro_f1"],
        "min_recall": min(c["recall"] for c in metrics["per_class"].values()),
        "robust_worst": f"{worst['corruption']} {worst['setting']}" if worst else None,
        "robust_worst_accuracy": worst["accuracy"] if worst else None,
        "robust_middle": {r["corruption"]: r["accuracy"] for r in robust["results"]},
    }


def scope_figures(
    run: Path, metrics: SplitMetrics, robust: RobustnessResult, scope_dirs: Sequence[str | Path]
) -> ScopeFigures:
    """Out-of-scope refusals (test, corrupted test, other folders) and prediction sets at 95%."""
    from bloodcell.workflows.evaluate_job import evaluate_scope_folders

    scope, sets = metrics.get("out_of_scope"), metrics.get("prediction_sets")
    rates = [rate for r in robust["results"] if (rate := r.get("out_of_scope_rate"))]
    figures: ScopeFigures = {
        "ood_test_flagged": scope["flagged"] if scope else None,
        "ood_test_flagged_paths": scope["flagged_paths"] if scope else None,
        "ood_corrupted_worst_rate": max(rates, default=0.0) if scope else None,
        "ood_corrupted_rates": {
            r["corruption"]: r.get("out_of_scope_rate") for r in robust["results"]
        },
        "sets95": sets["levels"]["0.95"] if sets else None,
        "ood_folders": {},
    }
    if scope and scope_dirs:
        result = evaluate_scope_folders(run, scope_dirs, progress=False)
        figures["ood_folders"] = {
            Path(r["folder"]).name: {
                "n": r["n"],
                "flagged_rate": r["flagged_rate"],
                "auroc": r["auroc"],
            }
            for r in result["folders"]
        }
    return figures


def inference_figures(run: Path, seconds: float, runs: int) -> InferenceFigures:
    """Torch eager, ONNX fp32 and ONNX int8 speed and size for a trained run."""
    import torch

    from bloodcell.export.onnx import export_onnx
    from bloodcell.models.backends import OnnxBackend
    from bloodcell.models.saved import WEIGHTS_FILE, load_model

    loaded = load_model(run)
    size = loaded.preprocess.image_size
    summary = export_onnx(run, quantize="int8")
    fp32, int8 = Path(summary["fp32"]), Path(summary["path"])
    batch = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
    one = batch[:1].copy()

    @torch.inference_mode()
    def eager(x: np.ndarray) -> object:
        return loaded.model(torch.from_numpy(x))

    engines = {
        "torch eager": (eager, loaded.path / WEIGHTS_FILE),
        "onnx fp32": (OnnxBackend(fp32).predict_logits, fp32),
        "onnx int8": (OnnxBackend(int8).predict_logits, int8),
    }
    speeds: dict[str, EngineSpeed] = {}
    for name, (fn, path) in engines.items():
        log.info("benchmark: inference speed, %s", name)
        speeds[name] = {
            "img_per_s": throughput(fn, batch, seconds),
            "latency_ms": latency(fn, one, runs)[0],
            "size_mb": path.stat().st_size / 1e6,
        }
    acc = summary.get("accuracy")
    return {
        "torch eager": speeds["torch eager"],
        "onnx fp32": speeds["onnx fp32"],
        "onnx int8": speeds["onnx int8"],
        "fp32_test_accuracy": acc["accuracy_fp32"] if acc else None,
        "int8_test_accuracy": acc["accuracy_int8"] if acc else None,
        "int8_accuracy_summary": acc or {},
    }


def machine() -> str:
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, allocator {current_allocator()}"
    )


def benchmark(
    data_root: str | Path,
    out_dir: str | Path,
    recipes: Sequence[str] = ("reference", "fast"),
    seeds: Sequence[int] = (0,),
    seconds: float = 3.0,
    runs: int = 100,
    train_args: Sequence[str] = (),
    scope_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
) -> BenchmarkRecord:
    """Run the whole benchmark into `out_dir`; prints the table and writes benchmark.{json,md}.

    Finished trainings found in `out_dir` are reused, so an interrupted benchmark goes on.
    """
    from bloodcell.reporting.benchmark_report import benchmark_markdown
    from bloodcell.workflows.run_job import prepare_data

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipes = ["reference", *[r for r in recipes if r != "reference"]]
    manifest = out / MANIFEST_COPY
    if not manifest.is_file():
        manifest, _ = prepare_data(Path(data_root).expanduser(), out, seed=0, progress=True)
    results = [
        train_recipe(r, s, Path(data_root), manifest, out, train_args, scope_dirs, verbose)
        for r in recipes
        for s in seeds
    ]
    inference = {r: inference_figures(out / f"{r}-seed{seeds[0]}", seconds, runs) for r in recipes}
    record: BenchmarkRecord = {"machine": machine(), "results": results, "inference": inference}
    text = benchmark_markdown(record["machine"], results, inference)
    (out / "benchmark.md").write_text(text + "\n")
    write_json(out / "benchmark.json", record, sort_keys=False)
    print(text)
    return record
