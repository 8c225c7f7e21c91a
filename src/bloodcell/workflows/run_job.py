"""`bloodcell run`: the main job end to end with defaults.

discover -> verify (unreadable files are reported and left out) -> grouped split
(`OUT/manifest.csv`) -> sample figures -> train (the run dir is OUT itself, so
`bloodcell.load(OUT)` works; default recipe `shape`, `train.config.DEFAULT_RECIPE`; training
ends by fitting the out-of-scope detector) -> calibrate (temperature and conformal prediction
sets on val) -> ONNX engines (fp32 and int8 written and checked on val; `export=False` skips)
-> evaluate val and test -> robustness on test (middle severities) -> the shortcut audit on
test (what the model looks at: cells erased, alone, swapped, scale bar masked; and the stain
audit: cells recoloured, grey, hue turned) -> out-of-scope
folders (`scope_dirs`, if given) -> top-level `OUT/report.md` and the model card
`OUT/model/README.md`.

The split figures come from torch, the reference the engines are checked against. The studies
after them (robustness, the audit, the folders) run on the engine `--engine auto` opens once
the engines are checked: what a user of the model directory gets, and on two cores the ONNX
engine answers about a fifth faster than torch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bloodcell.records import (
    AuditResult,
    CalibrationRecord,
    DataStep,
    EngineRecords,
    RobustnessResult,
    ScopeFoldersResult,
    SplitMetrics,
)
from bloodcell.run_dir import ModelDir, RunDir, write_json
from bloodcell.train.config import DEFAULT_RECIPE, TrainConfig, recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResults:
    """Everything one `bloodcell run` measured: what the report, `run_summary.json` and the
    console are made from."""

    out: RunDir
    config: TrainConfig
    #: The data step (`prepare_data`): layout, files, readable, unreadable, paths.
    data: DataStep
    manifest: Path
    calibration: CalibrationRecord
    timings: dict[str, float]
    #: Split name -> its evaluation.
    splits: dict[str, SplitMetrics]
    robustness: RobustnessResult
    audit: AuditResult
    scope_folders: ScopeFoldersResult | None = None
    #: The ONNX engines' checks; None when not exported.
    engines: EngineRecords | None = None


def prepare_data(data_root: Path, out: Path, seed: int, progress: bool) -> tuple[Path, DataStep]:
    """Verify and split the data; returns the manifest path and a summary of the data step."""
    from bloodcell.data.discover import discover
    from bloodcell.data.manifest import write_manifest
    from bloodcell.data.show import write_figures
    from bloodcell.data.split import format_counts, make_split
    from bloodcell.data.verify import verify

    run = RunDir(out)
    index = discover(data_root)
    report = verify(index, progress=progress)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.verify, report.to_json(), sort_keys=False)
    for bad in report.unreadable:
        log.info("left out (unreadable): %s: %s", bad["path"], bad["reason"])
    rows = make_split(report, seed=seed)
    manifest = write_manifest(rows, run.manifest_copy)
    log.info("%s", format_counts(rows))
    figures = write_figures(rows, index.root, run.figures)
    return manifest, {
        "layout": index.layout,
        "files": len(index.samples),
        "readable": report.total,
        "unreadable": len(report.unreadable),
        "verify": str(run.verify),
        "manifest": str(manifest),
        "figures": [str(f) for f in figures],
    }


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    """Record how many seconds the block took under `step`."""
    t = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - t


def run(
    data_root: str | Path,
    out_dir: str | Path = "runs/latest",
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: bool = True,
    scope_dirs: list[str | Path] | None = None,
    export: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the whole job into `out_dir`; returns a summary (paths, timings, metrics per split).

    Re-running into the same folder resumes an unfinished training of the same settings.
    `verbose` shows Lightning's own console output while training (`train.console`).
    """
    from bloodcell.data.corruptions import MIDDLE_SEVERITY
    from bloodcell.evaluation.calibrate import calibrate_run
    from bloodcell.export.check import export_engines
    from bloodcell.reporting.eval_report import write_run_report
    from bloodcell.reporting.model_card import write_model_card
    from bloodcell.workflows.audit_job import audit_run
    from bloodcell.workflows.evaluate_job import (
        evaluate_robustness,
        evaluate_run,
        evaluate_scope_folders,
    )

    out = RunDir(Path(out_dir))
    out.path.mkdir(parents=True, exist_ok=True)
    config = replace(config or recipe(DEFAULT_RECIPE), seed=seed)
    timings: dict[str, float] = {}
    with _timed(timings, "data"):
        manifest, data = prepare_data(Path(data_root).expanduser(), out.path, seed, progress)
    with _timed(timings, "train"):
        train_once(out, config, data_root, manifest, progress, verbose)
    with _timed(timings, "calibrate"):
        calibration = calibrate_run(out.path)
    engines = None
    if export:  # after calibration, so the files carry the final temperature and sets
        with _timed(timings, "export"):
            engines = export_engines(out.path, progress=progress)
    studied_on = "auto" if engines else "torch"
    results = {}
    for split in ("val", "test"):
        with _timed(timings, f"evaluate_{split}"):
            results[split] = evaluate_run(out.path, split, progress=progress)
    with _timed(timings, "robustness"):
        robust = evaluate_robustness(
            out.path, "test", severities=[MIDDLE_SEVERITY], progress=progress, engine=studied_on
        )
    with _timed(timings, "audit"):
        audit = audit_run(out.path, "test", progress=progress, engine=studied_on)
    scope_folders = None
    if scope_dirs:
        with _timed(timings, "ood"):
            scope_folders = evaluate_scope_folders(
                out.path, scope_dirs, progress=progress, engine=studied_on
            )
    timings = {k: round(v, 1) for k, v in timings.items()}
    r = RunResults(
        out,
        config,
        data,
        manifest,
        calibration,
        timings,
        results,
        robust,
        audit,
        scope_folders,
        engines,
    )
    write_run_report(out.path, results, report_extra(r))
    write_model_card(out.model)
    summary = run_summary(r)
    write_json(out.run_summary, summary, sort_keys=False)
    print_summary(r)
    return summary


def run_summary(r: RunResults) -> dict[str, Any]:
    """What `run_summary.json` holds: where everything is, the headline figures, the ONNX
    engines' checks (None when not exported) and the audit's results."""
    out, splits = r.out, r.splits
    return {
        "out": str(out.path),
        "data": r.data,
        "model": str(out.model),
        "report": str(out.report),
        "model_card": str(ModelDir(out.model).card),
        "timings": r.timings,
        "calibration": r.calibration,
        "engines": r.engines,
        "robustness": {
            "worst_middle": r.robustness["worst_middle"],
            "below_target_middle": r.robustness["below_target_middle"],
        },
        "metrics": {
            s: {k: m[k] for k in ("accuracy", "macro_f1", "ci95", "n")} for s, m in splits.items()
        },
        "out_of_scope": {s: m["out_of_scope"] for s, m in splits.items()},
        "prediction_sets": splits["test"]["prediction_sets"],
        "ood_folders": [
            {k: v for k, v in f.items() if k != "scores"}
            for f in (r.scope_folders["folders"] if r.scope_folders else [])
        ],
        "audit": {"variants": r.audit["variants"], "targets": r.audit["targets"]},
    }


def train_once(
    out: RunDir,
    config: TrainConfig,
    data_root: str | Path,
    manifest: Path,
    progress: bool,
    verbose: bool = False,
) -> None:
    """Train into the run unless it holds a model; go on from the last checkpoint of an
    unfinished training."""
    from bloodcell.train.job import train

    resume = out.last_checkpoint.exists() and not out.model.exists()
    if out.model.exists():
        log.info("%s exists: keeping the trained model (delete it to retrain)", out.model)
    else:
        train(
            config, data_root, manifest, out.path, resume=resume, progress=progress, verbose=verbose
        )


def report_extra(r: RunResults) -> list[str]:
    """The run report's lines after its table: where everything is, calibration, timings,
    robustness, refusals, prediction sets, (when measured) the out-of-scope folders, and the
    audit."""
    from bloodcell.reporting.audit_report import SECTION as AUDIT_SECTION
    from bloodcell.reporting.audit_report import report_lines as audit_lines
    from bloodcell.reporting.eval_report import conformal_lines, scope_lines
    from bloodcell.reporting.robustness_report import report_lines
    from bloodcell.reporting.scope_report import report_lines as scope_folders_report

    out, data, calibration, test = r.out, r.data, r.calibration, r.splits["test"]

    extra = [
        f"Data: {data['readable']} readable of {data['files']} files "
        f"({data['unreadable']} unreadable, left out; see `{out.link(out.verify)}`). "
        f"Split: `{out.link(out.manifest_copy)}` (duplicate groups kept within one split). "
        f"Sample images: `{out.link(out.figures)}/`.",
        "",
        f"Training: recipe `{r.config.recipe}` (`{out.link(out.train_config)}`), "
        f"`{out.link(out.log)}`, `{out.link(out.curves)}`; model: `{out.link(out.model)}/`.",
        "",
        f"Calibration: temperature {calibration['temperature']:.3f} fitted on the validation "
        f"split; validation ECE {calibration['ece_before']:.4f} before, "
        f"{calibration['ece_after']:.4f} after (the ECE in the split reports is after scaling).",
        "",
        f"Timings (s): {json.dumps(r.timings)}",
        "",
        f"![training curves]({out.link(out.curves)})",
        "",
        "## Robustness",
        "",
        *report_lines(r.robustness, image=out.link(out.robustness_png("test"))),
        "",
        "## Out of scope (test split)",
        "",
        *scope_lines(test),
        "",
        "## Prediction sets (test split)",
        "",
        *conformal_lines(test),
    ]
    if r.scope_folders is not None:
        scope_folders_lines = scope_folders_report(r.scope_folders, out.link(out.scope_folders_png))
        extra += ["", "## Out-of-scope folders", "", *scope_folders_lines]
    audit = audit_lines(r.audit, out.link(out.audit_png("test")))
    return [*extra, "", f"## {AUDIT_SECTION}", "", *audit]


def print_summary(r: RunResults) -> None:
    """What the console shows at the end: where things are, and the headline figures."""
    from bloodcell.evaluation.robustness import summary_lines
    from bloodcell.evaluation.scope_folders import summary_lines as scope_folders_summary
    from bloodcell.evaluation.split_metrics import summary_line
    from bloodcell.export.check import summary_lines as engine_lines
    from bloodcell.reporting.audit_report import summary_lines as audit_summary_lines

    print(f"manifest: {r.manifest}")
    print(f"model:    {r.out.model}")
    print(f"report:   {r.out.report}")
    print(f"card:     {ModelDir(r.out.model).card}")
    for m in r.splits.values():
        print(summary_line(m))
    for line in summary_lines(r.robustness):
        print(line)
    for line in engine_lines(r.engines) if r.engines else []:
        print(line)
    for line in scope_summary(r.splits["test"]) + (
        scope_folders_summary(r.scope_folders) if r.scope_folders else []
    ):
        print(line)
    for line in audit_summary_lines(r.audit):
        print(line)


def scope_summary(metrics: SplitMetrics) -> list[str]:
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
