"""`bloodcell run`: the main job end to end with defaults.

discover -> verify (unreadable files are reported and left out) -> grouped split
(`OUT/manifest.csv`) -> sample figures -> train (the run dir is OUT itself, so
`bloodcell.load(OUT)` works; default recipe `fast`; training ends by fitting the out-of-scope
detector) -> calibrate (temperature and conformal prediction sets on val) -> ONNX engines
(fp32 and int8 written and checked on val; `export=False` skips) -> evaluate val and
test -> robustness on test (middle severities) -> out-of-scope folders (`ood_dirs`, if given) ->
top-level `OUT/report.md` and the model card `OUT/model/README.md`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bloodcell.train import DEFAULT_RECIPE, TrainConfig, recipe


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_data(data_root: Path, out: Path, seed: int, progress: bool) -> tuple[Path, dict]:
    """Verify and split the data; returns the manifest path and a summary of the data step."""
    from bloodcell.data.discover import discover
    from bloodcell.data.manifest import write_manifest
    from bloodcell.data.show import write_figures
    from bloodcell.data.split import format_counts, make_split
    from bloodcell.data.verify import verify

    index = discover(data_root)
    report = verify(index, progress=progress)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "verify.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    for bad in report.unreadable:
        _say(f"left out (unreadable): {bad['path']}: {bad['reason']}")
    rows = make_split(report, seed=seed)
    manifest = write_manifest(rows, out / "manifest.csv")
    _say(format_counts(rows))
    figures = write_figures(rows, index.root, data_dir / "figures")
    return manifest, {
        "layout": index.layout,
        "files": len(index.samples),
        "readable": report.total,
        "unreadable": len(report.unreadable),
        "verify": str(data_dir / "verify.json"),
        "manifest": str(manifest),
        "figures": [str(f) for f in figures],
    }


def run(
    data_root: str | Path,
    out_dir: str | Path = "runs/latest",
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: bool = True,
    ood_dirs: list[str | Path] | None = None,
    export: bool = True,
) -> dict[str, Any]:
    """Run the whole job into `out_dir`; returns a summary (paths, timings, metrics per split).

    Re-running into the same folder resumes an unfinished training of the same settings.
    """
    from bloodcell.calibrate import calibrate_run
    from bloodcell.data.corruptions import MIDDLE_SEVERITY
    from bloodcell.engine_check import export_engines
    from bloodcell.engine_check import summary_lines as engine_lines
    from bloodcell.evaluate import evaluate_run, summary_line
    from bloodcell.model_card import write_model_card
    from bloodcell.ood_eval import evaluate_ood
    from bloodcell.ood_eval import report_lines as ood_report_lines
    from bloodcell.ood_eval import summary_lines as ood_summary_lines
    from bloodcell.report import conformal_lines, scope_lines, write_run_report
    from bloodcell.robustness import (
        ROBUSTNESS_PNG,
        evaluate_robustness,
        report_lines,
        summary_lines,
    )
    from bloodcell.train import CHECKPOINT_DIR, LAST_CKPT, MODEL_DIR, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = replace(config or recipe(DEFAULT_RECIPE), seed=seed)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    manifest, data = prepare_data(Path(data_root).expanduser(), out, seed, progress)
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    resume = (out / CHECKPOINT_DIR / LAST_CKPT).exists() and not (out / MODEL_DIR).exists()
    if (out / MODEL_DIR).exists():
        _say(f"{out / MODEL_DIR} exists: keeping the trained model (delete it to retrain)")
    else:
        train(config, data_root, manifest, out, resume=resume, progress=progress)
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    calibration = calibrate_run(out)
    timings["calibrate"] = time.perf_counter() - t
    engines = None
    if export:  # after calibration, so the files carry the final temperature and sets
        t = time.perf_counter()
        engines = export_engines(out, progress=progress)
        timings["export"] = time.perf_counter() - t

    results = {}
    for split in ("val", "test"):
        t = time.perf_counter()
        results[split] = evaluate_run(out, split, progress=progress)
        timings[f"evaluate_{split}"] = time.perf_counter() - t
    t = time.perf_counter()
    robust = evaluate_robustness(out, "test", severities=[MIDDLE_SEVERITY], progress=progress)
    timings["robustness"] = time.perf_counter() - t
    ood = None
    if ood_dirs:
        t = time.perf_counter()
        ood = evaluate_ood(out, ood_dirs, progress=progress)
        timings["ood"] = time.perf_counter() - t
    timings = {k: round(v, 1) for k, v in timings.items()}
    extra = [
        f"Data: {data['readable']} readable of {data['files']} files "
        f"({data['unreadable']} unreadable, left out; see `data/verify.json`). "
        "Split: `manifest.csv` (duplicate groups kept within one split). "
        "Sample images: `data/figures/`.",
        "",
        f"Training: recipe `{config.recipe}` (`train_config.json`), `log.csv`, `curves.png`; "
        "model: `model/`.",
        "",
        f"Calibration: temperature {calibration['temperature']:.3f} fitted on the validation "
        f"split; validation ECE {calibration['ece_before']:.4f} before, "
        f"{calibration['ece_after']:.4f} after (the ECE in the split reports is after scaling).",
        "",
        f"Timings (s): {json.dumps(timings)}",
        "",
        "![training curves](curves.png)",
        "",
        "## Robustness",
        "",
        *report_lines(robust, image=f"eval/test/{ROBUSTNESS_PNG}"),
        "",
        "## Out of scope (test split)",
        "",
        *scope_lines(results["test"]),
        "",
        "## Prediction sets (test split)",
        "",
        *conformal_lines(results["test"]),
    ]
    if ood is not None:
        ood_lines = ood_report_lines(ood, "eval/ood/ood_scores.png")
        extra += ["", "## Out-of-scope folders", "", *ood_lines]
    report = write_run_report(out, results, extra)
    card = write_model_card(out / MODEL_DIR)
    summary = {
        "out": str(out),
        "data": data,
        "model": str(out / MODEL_DIR),
        "report": str(report),
        "model_card": str(card),
        "timings": timings,
        "calibration": calibration,
        "engines": engines,
        "robustness": {
            "worst_middle": robust["worst_middle"],
            "below_target_middle": robust["below_target_middle"],
        },
        "metrics": {
            s: {k: m[k] for k in ("accuracy", "macro_f1", "ci95", "n")} for s, m in results.items()
        },
        "out_of_scope": {s: m["out_of_scope"] for s, m in results.items()},
        "prediction_sets": results["test"]["prediction_sets"],
        "ood_folders": [
            {k: v for k, v in r.items() if k != "scores"} for r in (ood or {}).get("folders", [])
        ],
    }
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"manifest: {manifest}")
    print(f"model:    {out / MODEL_DIR}")
    print(f"report:   {report}")
    print(f"card:     {card}")
    for m in results.values():
        print(summary_line(m))
    for line in summary_lines(robust):
        print(line)
    for line in engine_lines(engines) if engines else []:
        print(line)
    for line in scope_summary(results["test"]) + (ood_summary_lines(ood) if ood else []):
        print(line)
    return summary


def scope_summary(metrics: dict[str, Any]) -> list[str]:
    """Two lines for the console: refused in-scope images and the prediction sets at 95%."""
    lines = []
    scope = metrics.get("out_of_scope")
    if scope:
        lines.append(
            f"out of scope ({metrics.get('split')}): {scope['flagged']}/{scope['n']} in-scope "
            f"images refused ({scope['flagged_rate']:.1%})"
        )
    sets = metrics.get("prediction_sets")
    if sets:
        row = sets["levels"][f"{sets['default_coverage']:.2f}"]
        lines.append(
            f"prediction sets at {row['coverage_target']:.0%}: coverage {row['coverage']:.1%}, "
            f"mean size {row['mean_set_size']:.3f}, {row['multi_class_share']:.1%} with 2+ classes"
        )
    return lines
