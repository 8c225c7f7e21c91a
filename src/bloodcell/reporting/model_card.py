"""The model card: `model/README.md`, a page someone can hand to a colleague with the model.

Hugging Face model-card layout: YAML front matter (license, tags, library, data set, the test
and validation figures as `model-index`) and then what the model is for, what it learned from,
how it was trained, how good it is and how sure we are, calibration, robustness, what it
refuses, and where it is known to fail. Pure rendering from the files the model and its run
already hold (`config.json`, `metrics.json`, and through `run_dir.RunDir` the run's
`eval/test/robustness.json` and `eval/ood/ood.json`), so it is rewritten whenever they change
and never disagrees with them; whatever was not measured says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from bloodcell.labels import DISPLAY_NAMES
from bloodcell.models.saved import read_config, read_metrics, resolve_model_dir
from bloodcell.records import (
    ModelConfig,
    ModelMetrics,
    RobustnessResult,
    ScopeFoldersResult,
    SplitMetrics,
)
from bloodcell.reporting.card_studies import (
    engines_section,
    limits_section,
    looks_at_section,
    not_measured,
    robustness_section,
    scope_section,
    sets_section,
)
from bloodcell.reporting.markdown import ci_range, pct
from bloodcell.run_dir import ModelDir, RunDir, read_json

#: The Kaggle data set the models are trained on (its handle, as `bloodcell download` uses it).
DATASET = "mehradaria/leukemia"
WARNING = (
    "**Research use only — not a diagnosis.** Every result must be reviewed by a qualified "
    "professional; this model is not a medical device and has not been validated for clinical use."
)
CITATION = (
    "Ghaderzadeh M, Aria M, Hosseini A, Asadi F, Bashash D, Abolghasemi H. A fast and efficient "
    "CNN model for B-ALL diagnosis and its subtypes classification using peripheral blood smear "
    "images. Int J Intell Syst. 2022;37:5113-5133. doi:10.1002/int.22753. Dataset: Aria M. et "
    "al., Kaggle 2021, doi:10.34740/KAGGLE/DSV/2175623. The images may not be redistributed."
)
SPLITS: tuple[Literal["test"], Literal["val"]] = ("test", "val")


def _read_json(path: Path) -> Any:
    """A study's record (`records`), None when the study was not run."""
    return read_json(path) if path.is_file() else None


def write_model_card(model_dir: str | Path) -> Path:
    """Render `README.md` into the model directory (a run directory is accepted); its path."""
    model_dir = resolve_model_dir(model_dir)
    config = read_config(model_dir)
    metrics = read_metrics(model_dir)
    run = RunDir.of_model(model_dir)
    robust: RobustnessResult | None = _read_json(run.robustness_json("test"))
    scope_folders: ScopeFoldersResult | None = _read_json(run.scope_folders_json)
    path = ModelDir(model_dir).card
    path.write_text(render_card(config, metrics, robust, scope_folders, name=run.path.name))
    return path


def split_metrics(metrics: ModelMetrics) -> dict[str, SplitMetrics]:
    """The evaluated splits of a model's metrics.json (keyed by split), test first."""
    return {s: metrics[s] for s in SPLITS if isinstance(metrics.get(s), dict)}


def front_matter(config: ModelConfig, metrics: ModelMetrics, name: str) -> dict[str, object]:
    """The YAML header: what the Hub (and any reader of model cards) indexes."""
    results: list[dict[str, object]] = []
    for split, m in split_metrics(metrics).items():
        values: list[tuple[str, Literal["accuracy", "macro_f1"], str]] = [
            ("accuracy", "accuracy", f"{split} accuracy"),
            ("f1", "macro_f1", f"{split} macro-F1"),
        ]
        results.append(
            {
                "task": {"type": "image-classification", "name": "B-ALL smear classification"},
                # the Hub nests the split inside the dataset
                "dataset": {
                    "name": "B-ALL peripheral blood smears",
                    "type": DATASET,
                    "split": split,
                },
                "metrics": [
                    {"type": t, "name": label, "value": float(m[key])}
                    | ({"args": {"average": "macro"}} if t == "f1" else {})
                    for t, key, label in values
                    if isinstance(m.get(key), int | float)
                ],
            }
        )
    return {
        "license": "apache-2.0",
        "library_name": "bloodcell",
        "pipeline_tag": "image-classification",
        "tags": [
            "image-classification",
            "medical-imaging",
            "hematology",
            "acute-lymphoblastic-leukemia",
            "blood-smear",
            "research-only",
            str(config.get("architecture", "unknown")),
        ],
        "datasets": [DATASET],
        "metrics": ["accuracy", "f1"],
        "model-index": [{"name": name, "results": results}],
    }


def render_card(
    config: ModelConfig,
    metrics: ModelMetrics,
    robustness: RobustnessResult | None = None,
    scope_folders: ScopeFoldersResult | None = None,
    name: str = "bloodcell",
) -> str:
    """The whole card as markdown, from the saved files' contents."""
    head = yaml.safe_dump(front_matter(config, metrics, name), sort_keys=False, allow_unicode=True)
    test = split_metrics(metrics).get("test")
    sections = [
        ("Intended use", _intended_use()),
        ("Data and the grouped split", _data(config, metrics)),
        ("Training recipe", _training(config)),
        ("Metrics", _metrics(metrics)),
        ("Calibration", _calibration(config)),
        ("What the model looks at", looks_at_section(metrics.get("audit"))),
        ("Robustness", robustness_section(robustness)),
        ("Out of scope", scope_section(config, test, scope_folders)),
        ("Prediction sets", sets_section(config, test)),
        ("Engines", engines_section(metrics)),
        ("Known limits", limits_section()),
        ("How to cite the data", [CITATION]),
    ]
    text = ["---", head.rstrip("\n"), "---", "", f"# {name}: B-ALL blood smear classifier", ""]
    text += [WARNING, ""]
    for title, lines in sections:
        text += [f"## {title}", "", *lines, ""]
    return "\n".join(text)


def _intended_use() -> list[str]:
    classes = ", ".join(DISPLAY_NAMES.values())
    return [
        f"Classifies one image of a stained peripheral blood smear into {classes}, for research "
        "on B-cell acute lymphoblastic leukaemia (B-ALL) and its subtypes: to study how such "
        "classifiers behave, to triage images for review, to teach.",
        "",
        WARNING,
        "",
        "Not for: diagnosing or excluding leukaemia in a patient, images from another "
        "magnification, stain, scanner or cell type than the training smears (the out-of-scope "
        "detector below refuses many of those, not all), or any decision without a "
        "haematologist. A benign answer does not rule out leukaemia.",
    ]


def _data(config: ModelConfig, metrics: ModelMetrics) -> list[str]:
    data = config.get("data") or {}
    counts = next(
        (
            evaluated["counts"]
            for m in split_metrics(metrics).values()
            if (evaluated := m.get("data")) and evaluated.get("counts")
        ),
        None,
    )
    lines = [
        f"Kaggle data set `{DATASET}` (Aria et al., 2021): peripheral blood smear images of "
        "patients with suspected ALL, one folder per class, from one laboratory. Images that "
        "are copies of one another (same perceptual hash) form a group, and a group never "
        "crosses splits, so no test image has a twin in training.",
        "",
        f"Manifest sha256: `{data.get('manifest_sha256', 'not recorded')}`.",
        "",
    ]
    if not counts:
        return [*lines, not_measured("the images per split (no split was evaluated)")]
    splits = sorted(
        counts,
        key=lambda s: ("train", "val", "test").index(s) if s in ("train", "val", "test") else 3,
    )
    lines += ["| class | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for lab in next(iter(counts.values())):
        cells = " | ".join(str(counts[s].get(lab, 0)) for s in splits)
        lines.append(f"| {DISPLAY_NAMES.get(lab, lab)} | {cells} |")
    lines.append("| total | " + " | ".join(str(sum(counts[s].values())) for s in splits) + " |")
    return lines


_RECIPE_KEYS = (
    ("recipe", "recipe"),
    ("model", "architecture"),
    ("pretrained", "ImageNet weights"),
    ("freeze", "frozen backbone blocks"),
    ("epochs", "epochs"),
    ("epochs_trained", "epochs trained"),
    ("optimizer", "optimizer"),
    ("lr", "learning rate"),
    ("weight_decay", "weight decay"),
    ("schedule", "schedule"),
    ("batch_size", "batch size"),
    ("image_size", "image size (px)"),
    ("label_smoothing", "label smoothing"),
    ("normalize", "normalisation"),
    ("stain_norm", "stain normalisation"),
    ("augment", "image augmentation"),
    ("feature_aug", "flips and turns of cached features"),
    ("corrupt_copies", "corrupted copies of the train split"),
    ("corrupt_severity", "their strongest severity"),
    ("checkpoint", "checkpoint kept"),
    ("seed", "seed"),
    ("device", "device"),
    ("precision", "precision"),
)


def _training(config: ModelConfig) -> list[str]:
    training = config.get("training") or {}
    if not training:
        return [not_measured("the training settings (none were recorded with the model)")]
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {label} | `{training[key]}` |" for key, label in _RECIPE_KEYS if key in training]
    versions = config.get("versions") or {}
    if versions:
        lines += ["", "Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    return [*lines, "", "Every setting is in `config.json` under `training`."]


def _metrics(metrics: ModelMetrics) -> list[str]:
    splits = split_metrics(metrics)
    if not splits:
        return [not_measured("accuracy and the other metrics (`bloodcell evaluate RUN`)")]
    lines = [
        "95% intervals: accuracy and macro-F1 by percentile bootstrap over the evaluated images; "
        "sensitivity and specificity by Wilson score. They say how much a figure could move on "
        "another sample from the same source, nothing about other sites.",
        "",
        "| split | n | accuracy (95% CI) | macro-F1 (95% CI) | sensitivity (95% CI) | "
        "specificity (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for split, m in splits.items():
        ci = m.get("ci95") or {}
        c = m.get("clinical") or {}
        f1 = f"{m['macro_f1']:.3f}" if "macro_f1" in m else "n/a"
        lines.append(
            f"| {split} | {m.get('n', 'n/a')} | {pct(m.get('accuracy'))} "
            f"({ci_range(ci.get('accuracy'))}) | "
            f"{f1} ({ci_range(ci.get('macro_f1'), percent=False)}) | "
            f"{pct(c.get('sensitivity'))} ({ci_range(c.get('sensitivity_ci'))}) | "
            f"{pct(c.get('specificity'))} ({ci_range(c.get('specificity_ci'))}) |"
        )
    lines += [
        "",
        "Sensitivity: malignant images (any of the three malignant classes) called malignant; "
        "specificity: benign images called benign.",
        "",
        "Recall per class:",
        "",
        "| class | " + " | ".join(splits) + " |",
        "|---" * (len(splits) + 1) + "|",
    ]
    labels = list(next(iter(splits.values())).get("per_class", {}))
    for lab in labels:
        cells = []
        for m in splits.values():
            r: Mapping[str, Any] = m["per_class"].get(lab) or {}
            cells.append(f"{pct(r.get('recall'))} (n={r.get('support', 0)})")
        lines.append(f"| {DISPLAY_NAMES.get(lab, lab)} | " + " | ".join(cells) + " |")
    return lines


def _calibration(config: ModelConfig) -> list[str]:
    cal = config.get("calibration")
    if not cal:
        return [not_measured("calibration (`bloodcell calibrate RUN` fits it)")]
    return [
        f"Temperature scaling fitted on the validation split ({cal.get('n', '?')} images): "
        f"temperature {cal['temperature']:.3f}; expected calibration error "
        f"{cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after. Probabilities the model "
        f"reports are after scaling; below {config.get('uncertain_threshold', 0.8):.0%} top-class "
        "probability an answer is flagged uncertain.",
    ]
