"""`bloodcell audit`: the shortcut audit (`evaluation.shortcut_audit`) of a run's model on one
split, written with its picture grid and report section (`reporting.audit_report`) and recorded
in the model's metrics.json."""

from __future__ import annotations

import time
from pathlib import Path

from bloodcell.evaluation.shortcut_audit import DEFAULT_SEED, audit_images, targets
from bloodcell.records import AuditResult


def audit_run(
    model: str | Path,
    split: str = "test",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    engine: str | None = None,
) -> AuditResult:
    """Audit a run's model on one split (on `engine`; default: `evaluation.runs.open_run`'s);
    write audit.json, audit.png, the report section and `audit` in the model's metrics.json;
    return the result."""
    from bloodcell.evaluation.runs import open_run
    from bloodcell.models.saved import resolve_model_dir, update_metrics
    from bloodcell.reporting.audit_report import write_audit

    run = open_run(model, engine, data_root, manifest)
    s = run.images(split, progress)
    backend = run.backend
    t0 = time.perf_counter()
    summary, cases, answers = audit_images(backend, s.images, s.y_true, seed, progress=progress)
    result: AuditResult = {
        "split": split,
        "n_images": len(s.split.rows),
        "model": str(backend.path),
        "backend": backend.engine,
        "seed": seed,
        "variants": summary,
        "targets": targets(summary),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(out_dir) if out_dir else run.folder.eval_dir(split)
    write_audit(result, cases, answers, backend, out)
    if Path(model).is_dir():  # a model directory records it, on any engine; a lone file cannot
        update_metrics(resolve_model_dir(model), audit=result)
    return result
