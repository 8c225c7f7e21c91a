"""Robustness: how accuracy holds up when the microscope, the stain or the camera changes.

`evaluate_robustness` re-evaluates one split under every corruption of `data.corruptions` at each
severity, next to the clean images, and writes `robustness.json`, `robustness.csv`,
`robustness.png` and a "Robustness" section in `report.md` into RUN/eval/<split>/.

Each image is decoded once; corruptions are applied in memory with a generator seeded from
(seed, corruption name, severity, image index), so a rerun, or a run on a subset of corruptions,
sees exactly the same corrupted images. Scores follow `evaluate.compute_metrics` (and are tested
against it). The model is opened through `models.backends.open_backend`, so an exported `.onnx`
file works as well.
"""

from __future__ import annotations

import csv
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bloodcell.data.corruptions import MIDDLE_SEVERITY, Corruption, get
from bloodcell.errors import DatasetError
from bloodcell.evaluate import EVAL_DIR
from bloodcell.models.backends import Backend, Scored
from bloodcell.report import upsert_section

ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_PNG = "robustness.png"
SECTION_TITLE = "Robustness"
#: The bar: no middle-severity corruption may take accuracy below this.
TARGET_ACCURACY = 0.95
DEFAULT_SEED = 0

#: One evaluated condition: (corruption or None for clean, severity or 0).
Condition = tuple[Corruption | None, int]


# --- the model and the data ----------------------------------------------------------------------


def load_images(rows: Sequence[Any], data_root: Path, progress: bool) -> list[Image.Image]:
    """Decode every image of the split once (a 224-px split of ~300 images is ~45 MB)."""
    from tqdm import tqdm

    from bloodcell.data.decode import decode_image

    return [
        decode_image(data_root / r.path)
        for r in tqdm(rows, desc="decode", unit="img", file=sys.stderr, disable=not progress)
    ]


def _rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    """Independent of which other corruptions run, and stable across Python processes."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, index])


def predict_condition(
    backend: Backend,
    images: Sequence[Image.Image],
    transform: Callable,
    condition: Condition,
    seed: int = DEFAULT_SEED,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> Scored:
    """Probabilities (N, K) and out-of-scope scores for `images` under one condition."""
    import torch

    corruption, severity = condition
    probs, scores = [], []
    for start in range(0, len(images), batch_size):
        batch = []
        for i, img in enumerate(images[start : start + batch_size], start):
            if corruption is not None:
                img = corruption(img, severity, _rng(seed, corruption.name, severity, i))
            batch.append(transform(img))
        scored = backend.score(torch.stack(batch))
        probs.append(scored.probs)
        scores.append(scored.ood_score)
        if on_batch:
            on_batch(len(batch))
    has_scores = all(s is not None for s in scores)
    return Scored(
        np.concatenate(probs).astype(float), np.concatenate(scores) if has_scores else None
    )


def scope_rate(backend: Backend, scored: Scored) -> float | None:
    """Share of the images the out-of-scope detector refused (None without one)."""
    flags = backend.out_of_scope(scored.ood_score)
    return None if flags is None else float(flags.mean())


# --- scoring --------------------------------------------------------------------------------------


def score(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy (with its Wilson 95% interval), macro-F1, balanced accuracy, sensitivity and
    specificity, defined as in `evaluate.compute_metrics` but from one confusion matrix: the
    full metrics (ROC, bootstrap) cost ~0.1 s per condition and are not needed here."""
    from bloodcell.evaluate import _macro_f1_from_confusions, clinical_metrics, wilson_ci

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(probs).argmax(axis=1)
    k = len(labels)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    correct = int(np.trace(cm))
    support = cm.sum(axis=1)
    recall = np.diagonal(cm)[support > 0] / support[support > 0]
    c = clinical_metrics(y_true, y_pred, labels)
    return {
        "accuracy": correct / len(y_true),
        "accuracy_ci95": wilson_ci(correct, len(y_true)),
        "macro_f1": float(_macro_f1_from_confusions(cm[None])[0]),
        "balanced_accuracy": float(recall.mean()),
        "sensitivity": c["sensitivity"],
        "specificity": c["specificity"],
    }


def check_conditions(
    corruptions: str | Sequence[str] | None, severities: Sequence[int] | None
) -> None:
    """Fail on a corruption or severity typo before any work is done (the CLI calls it first)."""
    from bloodcell.errors import BloodcellError

    try:
        conditions(get(corruptions), severities)
    except ValueError as exc:
        raise BloodcellError(str(exc)) from None


def conditions(corruptions: Sequence[Corruption], severities: Sequence[int] | None) -> list:
    """Clean first, then every corruption at each asked severity (all when None)."""
    out: list[Condition] = [(None, 0)]
    for c in corruptions:
        for s in severities or c.severities:
            c.value(s)  # raises a clear ValueError for a severity out of range
            out.append((c, s))
    return out


def worst_middle(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The middle-severity row with the lowest accuracy (None when severity 2 was not run)."""
    middle = [r for r in results if r["severity"] == MIDDLE_SEVERITY]
    return min(middle, key=lambda r: (r["accuracy"], r["macro_f1"])) if middle else None


# --- the evaluation -------------------------------------------------------------------------------


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
) -> dict[str, Any]:
    """Evaluate `model` (run dir, model dir or `.onnx`) on `split` clean and under each
    corruption and severity; write JSON, CSV, plot and the report section; return the result."""
    from tqdm import tqdm

    from bloodcell.data.manifest import read_manifest, select
    from bloodcell.evaluate import open_run_model, resolve_data

    chosen = get(corruptions)
    todo = conditions(chosen, severities)
    backend, config, run_dir = open_run_model(model)
    data_root, manifest = resolve_data(config, run_dir, data_root, manifest)
    rows = select(read_manifest(manifest), split)
    if not rows:
        raise DatasetError(f"{manifest}: no {split} rows to evaluate")
    labels = list(backend.labels)
    y_true = np.array([labels.index(r.label) for r in rows])
    images = load_images(rows, data_root, progress)
    transform = backend.preprocess.transform()

    t0 = time.perf_counter()
    bar = tqdm(
        total=len(todo) * len(rows),
        desc="robustness",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    results = []
    with bar:
        for corruption, severity in todo:
            bar.set_postfix_str(corruption.label(severity) if corruption else "clean")
            if corruption:
                bar.set_description(corruption.name)
            scored = predict_condition(
                backend, images, transform, (corruption, severity), seed, batch_size, bar.update
            )
            scores = score(y_true, scored.probs, labels)
            scores["out_of_scope_rate"] = scope_rate(backend, scored)
            results.append(_row(corruption, severity, scores))
    clean, corrupted = results[0], results[1:]
    for r in corrupted:
        r["drop"] = clean["accuracy"] - r["accuracy"]
    worst = worst_middle(corrupted)
    result = {
        "split": split,
        "n": len(rows),
        "model": str(backend.path),
        "backend": backend.kind,
        "architecture": backend.architecture,
        "seed": seed,
        "target_accuracy": TARGET_ACCURACY,
        "middle_severity": MIDDLE_SEVERITY,
        "clean": clean,
        "results": corrupted,
        "corruptions": {
            c.name: {"description": c.description, "levels": list(c.levels)} for c in chosen
        },
        "worst_middle": worst,
        "below_target_middle": [
            r["corruption"]
            for r in corrupted
            if r["severity"] == MIDDLE_SEVERITY and r["accuracy"] < TARGET_ACCURACY
        ],
        "data": {"manifest": str(manifest), "data_root": str(data_root)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(out_dir) if out_dir else run_dir / EVAL_DIR / split
    result["out_dir"] = str(out)
    write_outputs(result, out)
    return result


def _row(corruption: Corruption | None, severity: int, scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "corruption": corruption.name if corruption else "clean",
        "severity": severity,
        "parameter": corruption.value(severity) if corruption else None,
        "setting": corruption.label(severity) if corruption else "none",
        **scores,
    }


# --- outputs --------------------------------------------------------------------------------------


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """robustness.json, robustness.csv, robustness.png and the report.md section."""
    from bloodcell.models.saved import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ROBUSTNESS_JSON, result)
    write_csv(out / ROBUSTNESS_CSV, [result["clean"], *result["results"]])
    plot_robustness(result, out / ROBUSTNESS_PNG)
    upsert_section(out / "report.md", SECTION_TITLE, report_lines(result))


CSV_FIELDS = (
    "corruption",
    "severity",
    "setting",
    "parameter",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "macro_f1",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for r in rows:
            lo, hi = r["accuracy_ci95"] or (None, None)
            values = {**r, "accuracy_ci_low": lo, "accuracy_ci_high": hi}
            w.writerow(["" if values[k] is None else _csv_value(values[k]) for k in CSV_FIELDS])


def _csv_value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _grid(result: dict[str, Any]) -> tuple[list[str], list[int], np.ndarray]:
    """(corruption names, severities, accuracy matrix with NaN where not run)."""
    names = list(dict.fromkeys(r["corruption"] for r in result["results"]))  # run order
    sevs = sorted({r["severity"] for r in result["results"]})
    acc = np.full((len(names), len(sevs)), np.nan)
    for r in result["results"]:
        acc[names.index(r["corruption"]), sevs.index(r["severity"])] = r["accuracy"]
    return names, sevs, acc


def plot_robustness(result: dict[str, Any], out: Path) -> Path:
    """Accuracy vs severity per corruption (left) and the same numbers as a heatmap (right)."""
    from matplotlib.colors import TwoSlopeNorm

    from bloodcell.report import _plt

    plt = _plt()
    names, sevs, acc = _grid(result)
    clean = result["clean"]["accuracy"]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(12, 0.45 * len(names) + 3), gridspec_kw={"width_ratios": [3, 2]}
    )
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        ax.plot([0, *sevs], [clean, *acc[i]], marker="o", color=cmap(i % 10), label=name)
    ax.axhline(TARGET_ACCURACY, color="k", ls="--", lw=0.8, label=f"{TARGET_ACCURACY:.0%} target")
    ax.set(
        xlabel="severity (0 = clean)",
        ylabel="accuracy",
        title=f"accuracy under corruption ({result['split']}, n={result['n']})",
        xticks=[0, *sevs],
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", ncol=2)
    # Yellow at the target, so green means "meets it" and anything below shades to red.
    norm = TwoSlopeNorm(vmin=0.25, vcenter=TARGET_ACCURACY, vmax=1.0)
    ax2.imshow(acc, cmap="RdYlGn", norm=norm, aspect="auto")
    for i in range(len(names)):
        for j in range(len(sevs)):
            if not np.isnan(acc[i, j]):
                ax2.text(j, i, f"{acc[i, j]:.0%}", ha="center", va="center", fontsize=8)
    ax2.set_xticks(range(len(sevs)), [f"severity {s}" for s in sevs])
    ax2.set_yticks(range(len(names)), names)
    ax2.set_title(f"accuracy (clean {clean:.1%})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    text = f"{r['setting']}: {r['accuracy']:.1%} (F1 {r['macro_f1']:.3f})"
    text = f"**{text}**" if r["accuracy"] < TARGET_ACCURACY else text
    if r.get("out_of_scope_rate") is not None:
        text += f"; {r['out_of_scope_rate']:.1%} out of scope"
    return text


def report_lines(result: dict[str, Any], image: str = ROBUSTNESS_PNG) -> list[str]:
    """The markdown section: what was done, the worst middle case, the table and the plot
    (`image`: the plot's path relative to the report that gets these lines)."""
    names, sevs, _ = _grid(result)
    by = {(r["corruption"], r["severity"]): r for r in result["results"]}
    clean = result["clean"]
    worst = result["worst_middle"]
    below = result["below_target_middle"]
    lines = [
        f"The {result['split']} split ({result['n']} images) re-evaluated under simulated "
        f"changes of stain, light, focus, compression and resolution (model `{result['model']}`, "
        f"{result['backend']}; corruption seed {result['seed']}; parameters in "
        "`bloodcell.data.corruptions`). Clean accuracy "
        f"{clean['accuracy']:.1%} (macro-F1 {clean['macro_f1']:.3f}). Cells: setting, accuracy, "
        f"macro-F1 (bold = below the {TARGET_ACCURACY:.0%} target) and the share the "
        "out-of-scope detector refused (these images are in scope: it should stay small).",
        "",
    ]
    if worst:
        lines += [
            f"**Worst middle-severity case: {worst['corruption']} {worst['setting']}, accuracy "
            f"{worst['accuracy']:.1%}** (macro-F1 {worst['macro_f1']:.3f}; clean "
            f"{clean['accuracy']:.1%}). "
            + (
                f"{len(below)} of {len(names)} corruptions fall below {TARGET_ACCURACY:.0%} at "
                f"the middle severity: {', '.join(below)}."
                if below
                else f"Every corruption stays at or above {TARGET_ACCURACY:.0%} at the middle "
                "severity."
            ),
            "",
        ]
    head = [f"severity {s}" + (" (middle)" if s == MIDDLE_SEVERITY else "") for s in sevs]
    lines += [
        "| corruption | " + " | ".join(head) + " |",
        "|---" * (len(sevs) + 1) + "|",
    ]
    for name in names:
        cells = " | ".join(_cell(by.get((name, s))) for s in sevs)
        lines.append(f"| {name} | {cells} |")
    lines += ["", f"![robustness]({image})"]
    return lines


# --- command line ---------------------------------------------------------------------------------


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What the CLI prints: clean, the worst middle case, and where the files are."""
    clean, worst = result["clean"], result["worst_middle"]
    lines = [f"robustness ({result['split']}, n={result['n']}): clean {clean['accuracy']:.1%}"]
    if worst:
        lines.append(
            f"worst middle-severity case: {worst['corruption']} {worst['setting']} "
            f"{worst['accuracy']:.1%}; below {TARGET_ACCURACY:.0%}: "
            f"{', '.join(result['below_target_middle']) or 'none'}"
        )
    return lines
