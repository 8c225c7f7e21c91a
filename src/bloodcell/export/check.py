"""Write the ONNX engines beside a model and check them before anything may choose them.

`export_engines(run)` exports `model.onnx` (fp32) and `model.int8.onnx`, runs the torch model and
both files over the validation and test splits, and records under `"engines"` in the model's
`metrics.json` how often each file's answers equal its reference's (fp32 against torch, int8
against fp32). An answer is a class or a refusal (out of scope, or a white cell of another
type), so an engine that refuses other images than its reference does not pass either. A file
that fails is deleted, so the model directory holds only engines that `--engine auto` may use.

The decision is taken on validation and test together: on 281 validation images alone, a
0.5% tolerance is one image, and one image near a boundary then decides which engine users get.

int8 moves the out-of-scope scores a little (the tapped activations are quantised), so the int8
record also holds a threshold refitted on the int8 file's own validation scores at the same
acceptance; `models.engines` applies it, and the check counts the refusals it gives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bloodcell.data.dataset import ManifestDataset
from bloodcell.evaluation.runs import Split, open_run
from bloodcell.export.onnx import export_onnx, split_or_none, update_metadata
from bloodcell.models.backends import Backend, OnnxBackend, Outputs
from bloodcell.models.cell_gate import CellGate, top_probability
from bloodcell.models.engines import ENGINE_FILES, ENGINES_KEY, weights_digest
from bloodcell.models.saved import load_model, update_metrics
from bloodcell.models.scope_detector import threshold_for
from bloodcell.models.torch_backend import TorchBackend, dataset_outputs
from bloodcell.records import EngineCheck, EngineComparison, EngineRecords, ScopeDetectorRecord

log = logging.getLogger(__name__)

#: An engine passes when its answers (a class, or a refusal) equal its reference's on at least
#: this share of the validation and test images together...
MIN_AGREEMENT = 0.995
#: ...and it gets at most this many more of them wrong than its reference.
MAX_EXTRA_ERRORS = 1
TOLERANCE = (
    f"answers (class or refusal) equal the reference's on >= {MIN_AGREEMENT:.1%} of the "
    f"validation and test images together, and at most {MAX_EXTRA_ERRORS} more of them wrong"
)
#: Each engine is checked against the next one up: int8 against fp32, fp32 against torch.
REFERENCE: dict[Literal["onnx", "onnx-int8"], str] = {"onnx": "torch", "onnx-int8": "onnx"}
#: The splits an engine is compared on.
CHECK_SPLITS: tuple[Literal["val", "test"], ...] = ("val", "test")


@dataclass(frozen=True)
class SplitOutputs:
    """Every engine's outputs over one split (keyed "torch", "onnx", "onnx-int8"), and the
    split's targets."""

    engines: dict[str, Outputs]
    targets: np.ndarray


def export_engines(
    run: str | Path,
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    progress: bool = False,
) -> EngineRecords:
    """Export fp32 and int8 ONNX beside the model, check both on val, keep what passes.

    Returns the record written under "engines" in metrics.json. Needs the run's data (for
    int8 calibration and the check); without it nothing is exported and DatasetError says so.
    """
    val = open_run(run, data_root=data_root, manifest=manifest).split("val")
    summary = export_onnx(
        run, quantize="int8", data_root=data_root, manifest=manifest, compare_on_test=False
    )
    loaded = load_model(run)
    backends: dict[str, Backend] = {
        "torch": TorchBackend(loaded),
        "onnx": OnnxBackend(summary["fp32"]),
        "onnx-int8": OnnxBackend(summary["path"]),
    }
    outputs: dict[Literal["val", "test"], SplitOutputs] = {"val": _outputs(backends, val, progress)}
    test = split_or_none(run, "test", data_root, manifest)
    if test:
        outputs["test"] = _outputs(backends, test, progress)
    thresholds = _thresholds(backends, outputs["val"], loaded.config.get("ood"))
    gate = CellGate.from_config(loaded.config.get("cell_gate"))
    digest = weights_digest(loaded.path)
    records: EngineRecords = {"tolerance": TOLERANCE, "checked_on": "+".join(outputs)}
    for engine, reference in REFERENCE.items():
        record: EngineCheck = {
            "file": ENGINE_FILES[engine],
            "bytes": (loaded.path / ENGINE_FILES[engine]).stat().st_size,
            "reference": reference,
            "weights_sha256": digest,
        }
        for split, out in outputs.items():
            record[split] = compare(out.engines[engine], out.engines[reference], out.targets)
            record[split].update(_flags(out, engine, reference, thresholds))
            mine, theirs = (answers(out, e, thresholds, gate) for e in (engine, reference))
            record[split]["answers_changed"] = int((mine != theirs).sum())
        record["verified"] = passes([record[split] for split in outputs])
        records[engine] = record
    int8_threshold = thresholds.get("onnx-int8")
    if int8_threshold is not None:
        acceptance = loaded.config["ood"]["acceptance"]
        records["onnx-int8"]["ood"] = {"acceptance": acceptance, "threshold": int8_threshold}
        # The file used alone (copied elsewhere, served as a lone .onnx) answers as the
        # model directory's int8 engine does: with its own threshold.
        ood = {**loaded.config["ood"], "threshold": int8_threshold}
        update_metadata(loaded.path / ENGINE_FILES["onnx-int8"], ood=ood)
    _drop_failed(loaded.path, records)
    update_metrics(loaded.path, **{ENGINES_KEY: records})
    return records


def compare(candidate: Outputs, reference: Outputs, targets: np.ndarray) -> EngineComparison:
    """How an engine's labels compare with its reference's on one split."""
    mine, theirs = candidate.logits.argmax(1), reference.logits.argmax(1)
    n = len(targets)
    return {
        "n": n,
        "agreement": float((mine == theirs).mean()) if n else None,
        "labels_changed": int((mine != theirs).sum()),
        "accuracy": float((mine == targets).mean()) if n else None,
        "reference_accuracy": float((theirs == targets).mean()) if n else None,
        "extra_errors": int((mine != targets).sum() - (theirs != targets).sum()),
    }


def passes(checks: Sequence[EngineComparison]) -> bool:
    """The tolerance, applied to the splits' comparisons together."""
    n = sum(c["n"] for c in checks)
    changed = sum(c.get("answers_changed", c["labels_changed"]) for c in checks)
    extra = sum(c["extra_errors"] for c in checks)
    return n > 0 and (n - changed) / n >= MIN_AGREEMENT and extra <= MAX_EXTRA_ERRORS


def answers(
    out: SplitOutputs, engine: str, thresholds: dict[str, float | None], gate: CellGate | None
) -> np.ndarray:
    """Each image's answer from `engine`: its class index, or -1 where it is refused as out of
    scope (at the engine's own threshold) or as a white cell of another type (`cell_gate`)."""
    logits, scores = out.engines[engine].logits, out.engines[engine].ood_score
    refused = np.zeros(len(logits), dtype=bool)
    threshold = thresholds.get(engine)
    if scores is not None and threshold is not None:
        refused |= scores > threshold
    if gate is not None:
        refused |= gate.refuses(top_probability(logits))
    return np.where(refused, -1, logits.argmax(1))


def _thresholds(
    backends: dict[str, Backend], val: SplitOutputs, ood: ScopeDetectorRecord | None
) -> dict[str, float | None]:
    """The out-of-scope threshold each engine uses: the model's, and for int8 one refitted on
    its own validation scores at the model's acceptance."""
    torch_threshold = backends["torch"].ood_threshold
    thresholds: dict[str, float | None] = {"torch": torch_threshold, "onnx": torch_threshold}
    scores = val.engines["onnx-int8"].ood_score
    thresholds["onnx-int8"] = None
    if ood is not None and scores is not None and torch_threshold is not None:
        thresholds["onnx-int8"] = threshold_for(scores, ood["acceptance"])
    return thresholds


def _flags(
    out: SplitOutputs, engine: str, reference: str, thresholds: dict[str, float | None]
) -> EngineComparison:
    """How many images change between in and out of scope from the reference to the engine."""
    mine, theirs = out.engines[engine].ood_score, out.engines[reference].ood_score
    if mine is None or theirs is None or thresholds[engine] is None:
        return {}
    flagged = mine > thresholds[engine]
    return {
        "out_of_scope": int(flagged.sum()),
        "scope_changed": int((flagged != (theirs > thresholds[reference])).sum()),
    }


def _outputs(backends: dict[str, Backend], split: Split, progress: bool) -> SplitOutputs:
    engines: dict[str, Outputs] = {}
    targets = np.zeros(0, dtype=np.int64)
    for name, backend in backends.items():
        ds = ManifestDataset(split.rows, split.root, backend.preprocess.transform())
        bar = f"check {name}" if progress else None
        engines[name], targets = dataset_outputs(backend, ds, 32, progress=bar)
    return SplitOutputs(engines, targets)


def _drop_failed(model_dir: Path, records: EngineRecords) -> None:
    """Delete files that failed (and int8 when its fp32 source did), saying why."""
    if not records["onnx"]["verified"]:
        records["onnx-int8"]["verified"] = False
    for engine in REFERENCE:
        record = records[engine]
        if record["verified"]:
            continue
        (model_dir / record["file"]).unlink(missing_ok=True)
        record["deleted"] = True
        log.info("%s: failed its check (%s); %s deleted", engine, TOLERANCE, record["file"])


def summary_lines(records: EngineRecords) -> list[str]:
    """One console line per engine: its check on val (and test when measured)."""
    lines = []
    for engine in REFERENCE:
        r = records.get(engine)
        if not r:
            continue
        verdict = "kept" if r["verified"] else "failed, deleted"
        parts = [
            f"{split} {r[split]['agreement']:.1%} of labels agree with {r['reference']} "
            f"({r[split]['labels_changed']} labels and "
            f"{r[split].get('answers_changed', r[split]['labels_changed'])} answers changed, "
            f"accuracy {r[split]['accuracy']:.1%})"
            for split in CHECK_SPLITS
            if r.get(split) and r[split]["n"]
        ]
        lines.append(f"{engine}: {verdict}; " + "; ".join(parts))
    return lines
