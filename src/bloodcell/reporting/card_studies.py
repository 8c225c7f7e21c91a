"""The model card's sections on what was measured beyond accuracy: what the model looks at
(the audit), robustness, what it refuses, prediction sets, the ONNX engines, and its known
limits. Split from `model_card`, which assembles the card, to keep each file readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from bloodcell.records import (
    AuditResult,
    EngineRecords,
    ModelConfig,
    ModelMetrics,
    RobustnessResult,
    ScopeFoldersResult,
    SplitMetrics,
)
from bloodcell.reporting.audit_report import report_lines as audit_lines
from bloodcell.reporting.eval_report import conformal_lines
from bloodcell.reporting.markdown import ci_range, pct
from bloodcell.reporting.robustness_report import report_lines as robustness_lines
from bloodcell.reporting.scope_report import report_lines as scope_folders_lines
from bloodcell.run_dir import AUDIT_PNG, RunDir

#: The run folder as the card (in RUN/model/) links into it.
RUN_FROM_CARD = RunDir(Path(".."))
#: The ONNX engines' rows, in the table's order.
ONNX_ENGINES: tuple[Literal["onnx"], Literal["onnx-int8"]] = ("onnx", "onnx-int8")


def not_measured(what: str) -> str:
    """The one sentence a card says for a part nobody measured."""
    return f"Not measured for this model: {what}."


def looks_at_section(audit: AuditResult | None) -> list[str]:
    if audit is None:
        return [
            not_measured(
                "whether the answer comes from the white cells or from the slide "
                "(`bloodcell audit RUN`)"
            )
        ]
    image = RUN_FROM_CARD.eval_dir(audit.get("split", "test")) / AUDIT_PNG
    return [*audit_lines(audit, image=image.as_posix()), "", measured_on(audit["backend"])]


def robustness_section(result: RobustnessResult | None) -> list[str]:
    if result is None:
        return [
            not_measured(
                "accuracy under stain, light, focus and camera changes "
                "(`bloodcell evaluate RUN --robustness`)"
            )
        ]
    image = RUN_FROM_CARD.robustness_png(result.get("split", "test"))
    return [*robustness_lines(result, image=image.as_posix()), "", measured_on(result["backend"])]


def measured_on(engine: str) -> str:
    """Which engine a study's answers came from (`bloodcell run` studies on `auto`'s)."""
    return f"Measured on the `{engine}` engine."


def scope_section(
    config: ModelConfig, test: SplitMetrics | None, scope_folders: ScopeFoldersResult | None
) -> list[str]:
    detector = config.get("ood")
    if not detector:
        return [not_measured("out-of-scope detection (this model has no detector; retrain it)")]
    layers = ", ".join(str(x) for x in detector.get("layers", []))
    lines = [
        f"Images unlike the training smears get no class: the detector ({detector['method']}, "
        f"backbone blocks {layers}) scores each image's distance from the training images, and "
        f"above **{detector['threshold']:.4f}**, the score that keeps "
        f"{pct(detector['acceptance'])} of validation images, the answer is `out_of_scope`.",
        "",
    ]
    gate = config.get("cell_gate")
    if gate:
        trained = gate.get("outliers")
        seen = (
            f", trained on {trained['trained']} images of other white cells from "
            f"{len(trained['folders'])} folders ({trained['held_out']} more held back to test it)"
            if trained
            else ""
        )
        lines += [
            "White cells of a type the model does not classify (neutrophils, monocytes, mature "
            "lymphocytes, ...) get no class either: with outlier exposure the model spreads its "
            f"belief over the four classes for them{seen}, and below a top probability of "
            f"**{gate['threshold']:.3f}** (which keeps {pct(gate['acceptance'])} of validation "
            "images) the answer is `out_of_scope`, reason 'a white cell of a type this model "
            "does not classify'.",
            "",
        ]
    else:
        lines += [
            "This model was trained without outlier images: it has no cell-type gate, and "
            "another kind of white cell gets one of the four classes.",
            "",
        ]
    preprocess = config.get("preprocess") or {}
    if preprocess.get("red_cell_px"):
        lines += [
            "Every answer records the image's scale, measured on its red cells; an image whose "
            "red cells are more than 3 times larger or smaller than in the training images is "
            "resized to the training scale first.",
            "",
        ]
    scope = test.get("out_of_scope") if test else None
    if scope:
        lines.append(
            f"On the in-scope test split it refused {scope['flagged']} of {scope['n']} images "
            f"({pct(scope['flagged_rate'])}, 95% Wilson CI {ci_range(scope['flagged_ci95'])}): "
            "each one a missed answer, not a caught error."
        )
    else:
        lines.append(not_measured("the share of in-scope test images refused"))
    lines.append("")
    if scope_folders is None:
        lines.append(
            not_measured("refusals on folders of other images (`bloodcell evaluate RUN --ood DIR`)")
        )
    else:
        lines += scope_folders_lines(scope_folders, RUN_FROM_CARD.scope_folders_png.as_posix())
    return lines


def sets_section(config: ModelConfig, test: SplitMetrics | None) -> list[str]:
    conformal = config.get("conformal")
    if not conformal:
        return [not_measured("prediction sets (`bloodcell calibrate RUN` fits them)")]
    lines = [
        f"Beside its answer the model gives the set of classes the image still fits, holding the "
        f"true class {conformal['coverage']:.0%} of the time ({conformal.get('method', 'split')}, "
        "fitted on the validation split). Measured on the test split:",
        "",
    ]
    if not test or not test.get("prediction_sets"):
        return [*lines, not_measured("coverage of the prediction sets on the test split")]
    return lines + conformal_lines(test)


def engines_section(metrics: ModelMetrics) -> list[str]:
    """The ONNX files beside the weights and how their check went (`engine_check`)."""
    records = metrics.get("engines")
    if not records:
        return [not_measured("ONNX engines (none exported; `bloodcell export MODEL --check`)")]
    lines = [
        f"`--engine auto` runs the fastest file whose check passed ({records['tolerance']}); "
        "Grad-CAM always uses torch.",
        "",
        "| engine | file | checked against | answers changed (val, test) | test label "
        "agreement | test accuracy | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in ONNX_ENGINES:
        r = records.get(engine)
        if not r:
            continue
        val, test = r.get("val") or {}, r.get("test") or {}
        changed = ", ".join(
            f"{c.get('answers_changed', c.get('labels_changed'))} of {c.get('n')}"
            for c in (val, test)
            if c
        )
        lines.append(
            f"| {engine} | `{r['file']}` | {r['reference']} | {changed} "
            f"| {pct(test.get('agreement'))} | {pct(test.get('accuracy'))} "
            f"| {'yes' if r['verified'] else 'no (deleted)'} |"
        )
    return [*lines, "", auto_engine_line(records)]


def auto_engine_line(records: EngineRecords) -> str:
    """Which engine `--engine auto` runs, and why not a faster one."""
    int8, fp32 = records.get("onnx-int8") or {}, records.get("onnx") or {}
    if int8.get("verified"):
        return "**`--engine auto` runs int8** (`model.int8.onnx`): its answers passed the check."
    why = "int8 was not exported"
    if int8:
        why = "int8 failed the check, so its file was deleted and is never chosen"
    if fp32.get("verified"):
        return f"**`--engine auto` runs ONNX fp32** (`model.onnx`): {why}."
    return f"**`--engine auto` runs torch**: {why}, and ONNX fp32 did not pass either."


def limits_section() -> list[str]:
    return [
        "- **Each class comes from its own slides.** In this dataset background, red cells, "
        "stain and the scale bar differ by class, so accuracy on it can come from recognising "
        "the slide rather than the white cells. 'What the model looks at' above measures how "
        "much; a model that has not passed that audit will not carry over to another lab. The "
        "cells recipes show the model only the white cells the finder marks, and an image in "
        "which it finds none is refused. The cells' own stain still differs by slide batch; "
        "the shape recipe shows the model the cells' lightness against the slide's white and "
        "their standardised tint instead of their colours, and the stain audit measures what "
        "is left.",
        "- **The white-cell finder reads stain colour.** A hue turn of 25-30 degrees, a grey "
        "image or an overexposed one (highlights clipped) can hide white cells from it or mark "
        "red cells as white cells; the stain audit's hue sweep measures it.",
        "- **No external-site validation.** Every image comes from one laboratory, one staining "
        "protocol and one camera; the figures above say nothing about another hospital. The "
        "robustness table simulates such changes, it does not replace them.",
        "- **Hematogones against Early Pre-B is the hard pair.** Benign hematogones look like "
        "malignant early precursors; most errors and two-class prediction sets fall between "
        "Benign and Malignant Early Pre-B. Confirm by flow cytometry.",
        "- **The int8 ONNX engine shifts the out-of-scope scores.** Quantisation moves the "
        "scores a little, so an image close to the threshold can be refused by one engine and "
        "answered by the other; the labels agree far more closely than the refusals.",
        "- Small test split: intervals are wide, and differences between models inside them are "
        "not evidence that one is better.",
    ]
