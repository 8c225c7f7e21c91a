"""`bloodcell evaluate`: a split's figures, its robustness under corruptions and the
out-of-scope folders, each computed by `evaluation` and written, with its pictures and report
sections, by `reporting`.

- `evaluate_run`: RUN/eval/<split>/ metrics.json, predictions.csv, the three PNGs and
  report.md; the split's figures also go into the model's own metrics.json.
- `evaluate_robustness`: robustness.json, robustness.csv, robustness.png and a "Robustness"
  section in the split's report.md.
- `evaluate_scope_folders`: RUN/eval/ood/ood.json, ood_scores.png and an "Out-of-scope
  folders" section in the split's report.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bloodcell.evaluation.robustness import DEFAULT_SEED
from bloodcell.records import RobustnessResult, ScopeFoldersResult, SplitMetrics
from bloodcell.run_dir import METRICS_FILE, PREDICTIONS_FILE


def evaluate_run(
    run_or_model_dir: str | Path,
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> SplitMetrics:
    """Evaluate a saved model on one manifest split; write RUN/eval/<split>/ and return metrics.

    Data root and manifest default to those the model recorded at training time
    (`RunDir.find_data`). The model answers with its calibration temperature, out-of-scope
    detector and prediction sets.
    """
    from bloodcell.evaluation.runs import open_run
    from bloodcell.evaluation.split_metrics import record_in_model, split_metrics, write_predictions
    from bloodcell.reporting.eval_report import write_eval_report
    from bloodcell.run_dir import write_json

    run = open_run(run_or_model_dir, "torch", data_root, manifest)
    loaded = run.loaded
    done = split_metrics(run, split, batch_size, progress)
    out = Path(out_dir) if out_dir else run.folder.eval_dir(split)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / METRICS_FILE, done.metrics)
    write_predictions(
        out / PREDICTIONS_FILE, done.rows, done.probs, done.scope_scores, loaded.labels
    )
    write_eval_report(done.metrics, done.y_true, done.probs, out, loaded.config)
    record_in_model(loaded.path, split, done.metrics)
    return done.metrics


def evaluate_robustness(
    model: str | Path,
    split: str = "test",
    corruptions: str | Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    batch_size: int = 64,
    progress: bool = True,
    engine: str | None = None,
) -> RobustnessResult:
    """Evaluate `model` (run dir, model dir or `.onnx`, on `engine`) on `split` clean and under
    each corruption and severity; write JSON, CSV, plot and the report section; return the
    result."""
    from bloodcell.data.corruptions import get
    from bloodcell.evaluation.robustness import conditions, robustness_result
    from bloodcell.evaluation.runs import open_run
    from bloodcell.reporting.robustness_report import write_robustness

    chosen = get(corruptions)
    todo = conditions(chosen, severities)  # a typo fails before the model is opened
    run = open_run(model, engine, data_root, manifest)
    result = robustness_result(run, split, chosen, todo, seed, batch_size, progress)
    out = Path(out_dir) if out_dir else run.folder.eval_dir(split)
    result["out_dir"] = str(out)
    write_robustness(result, out)
    return result


def evaluate_scope_folders(
    model: str | Path,
    folders: Sequence[str | Path],
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    engine: str | None = None,
) -> ScopeFoldersResult:
    """Score the in-scope split and each folder (on `engine`); write JSON, histogram and report
    section."""
    from bloodcell.evaluation.scope_folders import scope_folders_result
    from bloodcell.reporting.scope_report import write_scope_folders

    result, run = scope_folders_result(model, folders, split, data_root, manifest, progress, engine)
    out = Path(out_dir) if out_dir else run.scope_folders_dir
    write_scope_folders(result, out, run, split, beside_run=out_dir is None)
    result["out_dir"] = str(out)
    return result
