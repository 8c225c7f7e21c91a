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
from typing import Any

import numpy as np

from bloodcell.records import RobustnessResult, SplitMetrics, TrainConfigRecord, TrainSummary
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
) -> dict[str, Any]:
    """Train one recipe in its own process (so its peak memory is its own), then evaluate it."""
    from bloodcell.data.corruptions import MIDDLE_SEVERITY
    from bloodcell.data.manifest import read_manifest, select
    from bloodcell.evaluation.calibrate import calibrate_run
    from bloodcell.workflows.evaluate_job import evaluate_robustness, evaluate_run

    run = RunDir(out / f"{recipe}-seed{seed}")
    if not run.model.is_dir():
        cmd = [sys.executable, "-m", "bloodcell.cli", "train", "--data", str(data_root),
               "--manifest", str(manifest), "--out", str(run.path), "--recipe", recipe,
               "--seed", str(seed), *extra]  # fmt: skip
        log.info("benchmark: training %s (seed %s) -> %s", recipe, seed, run.path)
        code, wall, rss = run_measured(cmd)
        if code != 0:
            raise RuntimeError(f"training {recipe} seed {seed} failed (exit {code})")
        write_json(run.path / MEASURED_FILE, {"wall_s": wall, "peak_rss_mb": rss})
    measured = read_json(run.path / MEASURED_FILE)
    summary: TrainSummary = read_json(run.train_summary)
    started: TrainConfigRecord = read_json(run.train_config)
    calibrate_run(run.path)
    metrics = evaluate_run(run.path, "test", progress=False)
    robust = evaluate_robustness(run.path, "test", severities=[MIDDLE_SEVERITY], progress=False)
    worst = robust["worst_middle"]
    n_train = len(select(read_manifest(manifest), "train"))
    return scope_figures(run.path, metrics, robust, scope_dirs) | {
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
) -> dict[str, Any]:
    """Out-of-scope refusals (test, corrupted test, other folders) and prediction sets at 95%."""
    from bloodcell.workflows.evaluate_job import evaluate_scope_folders

    scope, sets = metrics.get("out_of_scope"), metrics.get("prediction_sets")
    rates = [rate for r in robust["results"] if (rate := r.get("out_of_scope_rate"))]
    figures: dict[str, Any] = {
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
            Path(r["folder"]).name: {k: r[k] for k in ("n", "flagged_rate", "auroc")}
            for r in result["folders"]
        }
    return figures


def format_scope_table(results: list[dict[str, Any]]) -> str:
    """Per seed: in-scope test images refused, the worst corrupted share refused, each other
    folder's share refused, and the 95% prediction sets' coverage and mean size."""
    folders = sorted({f for r in results for f in r.get("ood_folders") or {}})
    head = ["recipe", "seed", "test refused", "worst corruption refused"]
    head += [f"{f} refused" for f in folders] + ["95% sets: coverage", "mean size"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in results:
        if r.get("ood_test_flagged") is None:
            continue
        cells = [r["recipe"], str(r["seed"]), str(r["ood_test_flagged"])]
        cells.append(f"{r['ood_corrupted_worst_rate']:.1%}")
        for f in folders:
            rate = (r["ood_folders"].get(f) or {}).get("flagged_rate")
            cells.append("–" if rate is None else f"{rate:.1%}")
        sets = r.get("sets95") or {}
        cells.append(f"{sets['coverage']:.2%}" if sets else "–")
        cells.append(f"{sets['mean_set_size']:.3f}" if sets else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def inference_figures(run: Path, seconds: float, runs: int) -> dict[str, Any]:
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
    out: dict[str, Any] = {}
    for name, (fn, path) in engines.items():
        log.info("benchmark: inference speed, %s", name)
        out[name] = {
            "img_per_s": throughput(fn, batch, seconds),
            "latency_ms": latency(fn, one, runs)[0],
            "size_mb": path.stat().st_size / 1e6,
        }
    acc = summary.get("accuracy") or {}
    out["fp32_test_accuracy"] = acc.get("accuracy_fp32")
    out["int8_test_accuracy"] = acc.get("accuracy_int8")
    out["int8_accuracy_summary"] = acc
    return out


# --- the table ----------------------------------------------------------------------------------


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    mean, spread = statistics.mean(values), statistics.pstdev(values)
    return f"{mean:.4f} ± {spread:.4f} (min {min(values):.4f})"


def format_table(results: list[dict[str, Any]], inference: dict[str, dict[str, Any]]) -> str:
    """One markdown table per part; every speed also as a ratio to the reference recipe."""
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_recipe.setdefault(r["recipe"], []).append(r)
    ref = by_recipe.get("reference")
    ref_wall = statistics.mean(r["train_wall_s"] for r in ref) if ref else None
    lines = [
        "| recipe | seeds | train wall s | time vs reference | train img/s | peak RSS MB "
        "| test accuracy | test 95% CI (seed 1st) | macro-F1 | lowest class recall "
        "| worst corruption (middle severity) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in by_recipe.items():
        wall = statistics.mean(r["train_wall_s"] for r in rs)
        ci = rs[0]["test_ci95"]
        lines.append(
            f"| {name} | {len(rs)} | {wall:.1f} | "
            f"{(wall / ref_wall if ref_wall else float('nan')):.2f}x | "
            f"{statistics.mean(r['train_img_per_s'] for r in rs):.1f} | "
            f"{max(r['peak_rss_mb'] for r in rs):.0f} | "
            f"{_mean_spread([r['test_accuracy'] for r in rs])} | {ci[0]:.4f}–{ci[1]:.4f} | "
            f"{_mean_spread([r['test_macro_f1'] for r in rs])} | "
            f"{_mean_spread([r['min_recall'] for r in rs])} | "
            + ", ".join(f"{r['robust_worst']} {r['robust_worst_accuracy']:.3f}" for r in rs)
            + " |"
        )
    lines += [
        "",
        "| recipe | engine | img/s @ batch 32 | batch-1 latency ms | size MB | test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, inf in inference.items():
        acc = {  # each engine's own measured accuracy on the test split
            "torch eager": by_recipe[name][0]["test_accuracy"],
            "onnx fp32": inf.get("fp32_test_accuracy"),
            "onnx int8": inf.get("int8_test_accuracy"),
        }
        for engine in ("torch eager", "onnx fp32", "onnx int8"):
            e = inf[engine]
            a = acc[engine]
            lines.append(
                f"| {name} | {engine} | {e['img_per_s']:.1f} | {e['latency_ms']:.2f} | "
                f"{e['size_mb']:.1f} | {'' if a is None else f'{a:.4f}'} |"
            )
    return "\n".join(lines)


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
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"allocator {os.environ.get('BLOODCELL_ALLOCATOR_SET', 'system')}"
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
) -> dict[str, Any]:
    """Run the whole benchmark into `out_dir`; prints the table and writes benchmark.{json,md}.

    Finished trainings found in `out_dir` are reused, so an interrupted benchmark goes on.
    """
    from bloodcell.workflows.run_job import prepare_data

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipes = ["reference", *[r for r in recipes if r != "reference"]]
    manifest = out / MANIFEST_COPY
    if not manifest.is_file():
        manifest, _ = prepare_data(Path(data_root).expanduser(), out, seed=0, progress=True)
    results = [
        train_recipe(r, s, Path(data_root), manifest, out, train_args, scope_dirs)
        for r in recipes
        for s in seeds
    ]
    inference = {r: inference_figures(out / f"{r}-seed{seeds[0]}", seconds, runs) for r in recipes}
    table = format_table(results, inference) + "\n\n" + format_scope_table(results)
    header = f"Machine: {machine()}\n\n"
    (out / "benchmark.md").write_text(header + table + "\n")
    record = {"machine": machine(), "results": results, "inference": inference}
    write_json(out / "benchmark.json", record, sort_keys=False)
    print(header + table)
    return record
