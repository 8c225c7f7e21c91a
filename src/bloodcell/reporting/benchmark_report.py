"""`benchmark.md`: the tables of `bloodcell benchmark` (`workflows.benchmark`), from what
`benchmark.json` holds."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from bloodcell.records.benchmark_records import ENGINES, InferenceFigures, RecipeResult
from bloodcell.reporting.markdown import table


def benchmark_markdown(
    machine: str, results: Sequence[RecipeResult], inference: Mapping[str, InferenceFigures]
) -> str:
    """The whole of `benchmark.md` (without its final newline): the machine, then the tables."""
    tables = format_table(results, inference) + "\n\n" + format_scope_table(results)
    return f"Machine: {machine}\n\n" + tables


def format_table(results: Sequence[RecipeResult], inference: Mapping[str, InferenceFigures]) -> str:
    """One markdown table per part; every speed also as a ratio to the reference recipe."""
    by_recipe: dict[str, list[RecipeResult]] = {}
    for r in results:
        by_recipe.setdefault(r["recipe"], []).append(r)
    ref = by_recipe.get("reference")
    ref_wall = statistics.mean(r["train_wall_s"] for r in ref) if ref else None
    head = ["recipe", "seeds", "train wall s", "time vs reference", "train img/s", "peak RSS MB",
            "test accuracy", "test 95% CI (seed 1st)", "macro-F1", "lowest class recall",
            "worst corruption (middle severity)"]  # fmt: skip
    rows = []
    for name, rs in by_recipe.items():
        wall = statistics.mean(r["train_wall_s"] for r in rs)
        ci = rs[0]["test_ci95"]
        rows.append(
            [
                name,
                str(len(rs)),
                f"{wall:.1f}",
                f"{(wall / ref_wall if ref_wall else float('nan')):.2f}x",
                f"{statistics.mean(r['train_img_per_s'] for r in rs):.1f}",
                f"{max(r['peak_rss_mb'] for r in rs):.0f}",
                _mean_spread([r["test_accuracy"] for r in rs]),
                f"{ci[0]:.4f}–{ci[1]:.4f}",
                _mean_spread([r["test_macro_f1"] for r in rs]),
                _mean_spread([r["min_recall"] for r in rs]),
                ", ".join(f"{r['robust_worst']} {r['robust_worst_accuracy']:.3f}" for r in rs),
            ]
        )
    speeds = []
    for name, inf in inference.items():
        acc = {  # each engine's own measured accuracy on the test split
            "torch eager": by_recipe[name][0]["test_accuracy"],
            "onnx fp32": inf["fp32_test_accuracy"],
            "onnx int8": inf["int8_test_accuracy"],
        }
        for engine in ENGINES:
            e = inf[engine]
            a = acc[engine]
            speeds.append(
                [
                    name,
                    engine,
                    f"{e['img_per_s']:.1f}",
                    f"{e['latency_ms']:.2f}",
                    f"{e['size_mb']:.1f}",
                    "" if a is None else f"{a:.4f}",
                ]  # fmt: skip
            )
    engine_head = ["recipe", "engine", "img/s @ batch 32", "batch-1 latency ms", "size MB",
                   "test accuracy"]  # fmt: skip
    return "\n".join([*table(head, rows), "", *table(engine_head, speeds)])


def format_scope_table(results: Sequence[RecipeResult]) -> str:
    """Per seed: in-scope test images refused, the worst corrupted share refused, each other
    folder's share refused, and the 95% prediction sets' coverage and mean size."""
    folders = sorted({f for r in results for f in r["ood_folders"]})
    head = ["recipe", "seed", "test refused", "worst corruption refused"]
    head += [f"{f} refused" for f in folders] + ["95% sets: coverage", "mean size"]
    rows = []
    for r in results:
        if r["ood_test_flagged"] is None:
            continue
        cells = [r["recipe"], str(r["seed"]), str(r["ood_test_flagged"])]
        cells.append(f"{r['ood_corrupted_worst_rate']:.1%}")
        for f in folders:
            folder = r["ood_folders"].get(f)
            rate = folder["flagged_rate"] if folder else None
            cells.append("–" if rate is None else f"{rate:.1%}")
        sets = r["sets95"]
        cells.append(f"{sets['coverage']:.2%}" if sets else "–")
        cells.append(f"{sets['mean_set_size']:.3f}" if sets else "–")
        rows.append(cells)
    return "\n".join(table(head, rows))


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    mean, spread = statistics.mean(values), statistics.pstdev(values)
    return f"{mean:.4f} ± {spread:.4f} (min {min(values):.4f})"
