"""How the shortcut audit (`evaluation.shortcut_audit`) is shown: `audit.json`, the picture grid
`audit.png` (for one image of each class, every variant with the model's answer and its Grad-CAM
overlay: for a model that reads the cells, the heat sits on them), and the markdown section that
the split's report, the run's report, the model card and the CV report include."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bloodcell.labels import DISPLAY_NAMES
from bloodcell.records import AuditResult, AuditSummary, AuditVariants
from bloodcell.reporting.markdown import pct, upsert_section
from bloodcell.reporting.plots import pyplot, short_names
from bloodcell.run_dir import AUDIT_JSON, AUDIT_PNG, REPORT_MD

SECTION = "What the model looks at"
#: What each variant is, in the words of the report.
MEANING = {
    "original": "the test images as they are",
    "erased": "white cells painted over with the background (no cell left)",
    "alone": "white cells alone on neutral grey",
    "swapped": "white cells pasted on another class's cell-free background",
    "corner": "scale-bar corner masked",
    "recoloured": "white cells in another class's cells' colour (lightness kept)",
    "grey": "white cells without colour (lightness kept)",
    **{f"hue_{d}": f"hue turned {d}°" for d in (5, 10, 15, 20, 25, 30)},
}
#: The columns of the picture grid (the hue sweep is shown by its 20° turn).
PICTURED = ("original", "erased", "alone", "swapped", "corner", "recoloured", "grey", "hue_20")


def write_audit(
    result: AuditResult, cases: Sequence[Any], answers: Sequence[Any], backend: Any, out: Path
) -> Path:
    """audit.json, audit.png and the report section in `out` (RUN/eval/<split>/)."""
    from bloodcell.run_dir import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / AUDIT_JSON, result)
    plot_examples(cases, answers, backend, out / AUDIT_PNG)
    return upsert_section(out / REPORT_MD, SECTION, report_lines(result, AUDIT_PNG))


def report_lines(result: AuditSummary, image: str | None = None) -> list[str]:
    """The section: a table per variant, what swaps followed per class, and the pass marks."""
    v = result["variants"]
    lines = [
        "Does the answer come from the white cells or from the slide around them? In this "
        "dataset each class comes from its own slides, so a model can be right by recognising "
        "the slide. On the "
        f"{result['split']} split ({result['n_images']} images), the white cells the finder "
        "marks were erased, shown alone, moved onto another class's background, and the "
        "scale-bar corner was masked; then, with the slide hidden, does the answer come from "
        "the cells' shape or their stain? The cells were given another class's cells' colour, "
        "shown without colour, and the image's hue was turned. *Refused* = no white cell "
        "found, out of scope, or a cell type the model does not classify.",
        "",
        "| images | n | refused | answered | top class right (all) | right (answered) |",
        "|---|---|---|---|---|---|",
    ]
    for name, meaning in MEANING.items():
        if name in v:
            r = v[name]
            lines.append(
                f"| {meaning} | {r['n']} | {pct(r['refused'])} | {pct(r['answered'])} | "
                f"{pct(r['accuracy'])} | {pct(r['answered_accuracy'])} |"
            )
    swaps = v.get("swapped")
    if swaps:
        lines += [
            "",
            f"Swaps answered: {pct(swaps['answered'])}; of those the label follows **the cells "
            f"{pct(swaps['follows_cells'])}**, the background {pct(swaps['follows_background'])}"
            f", neither {pct(swaps['follows_neither'])}. *Background reliance* (erased images "
            f"still given their true class): {pct(v['erased']['accuracy'])}.",
            *_per_class_lines(v, "swapped", "swaps", ("cells", "background")),
        ]
    lines += _recoloured_lines(v)
    lines += ["", "Targets: " + _marks(result.get("targets") or {})]
    if image:
        lines += ["", f"![audit examples with Grad-CAM]({image})"]
    return lines


def _recoloured_lines(v: AuditVariants) -> list[str]:
    """What recoloured cells' labels followed, overall and per class of the cells."""
    r = v.get("recoloured")
    if not r:
        return []
    return [
        "",
        f"Recoloured cells answered: {pct(r['answered'])}; of those the label follows **the "
        f"shape {pct(r['follows_shape'])}**, the colour donor {pct(r['follows_colour'])}, "
        f"neither {pct(r['follows_neither'])}.",
        *_per_class_lines(v, "recoloured", "recoloured", ("shape", "colour")),
    ]


def _per_class_lines(
    v: AuditVariants, variant: str, noun: str, words: tuple[str, str]
) -> list[str]:
    """A table per class of the cells: how many `variant` images, answered, and the shares
    whose label follows the image's own class (`words[0]`), the donor's (`words[1]`) or
    neither."""
    own, donor = words
    lines = [
        "",
        f"| cells of | {noun} | answered | follows {own} | follows {donor} | neither |",
        "|---|---|---|---|---|---|",
    ]
    for lab, s in v.get(f"{variant}_per_class", {}).items():
        answered = s["n_answered"] / s["n"] if s["n"] else None
        lines.append(
            f"| {DISPLAY_NAMES.get(lab, lab)} | {s['n']} | {pct(answered)} | "
            f"{pct(s[f'follows_{own}'])} | {pct(s[f'follows_{donor}'])} | "
            f"{pct(s['follows_neither'])} |"
        )
    return lines


def _marks(t: dict[str, bool | None]) -> str:
    words = {
        "erased_refused": ">= 95% of cell-erased images refused",
        "swaps_answered": ">= 80% of swaps answered",
        "swaps_follow_cells": "swaps follow the cells >= 90%",
        "swaps_follow_background": "swaps follow the background <= 5%",
        "recoloured_follow_shape": "recoloured cells follow the shape >= 90%",
        "recoloured_follow_colour": "recoloured cells follow the colour <= 5%",
        "hue_20_accuracy": "hue turned 20°: >= 95% right",
    }
    done = {True: "met", False: "**not met**", None: "not measured"}
    return "; ".join(f"{w}: {done[t.get(k)]}" for k, w in words.items())


def plot_examples(cases: Sequence[Any], answers: Sequence[Any], backend: Any, out: Path) -> Path:
    """One row per class (its first image with a white cell), one column per variant: the
    Grad-CAM overlay of the class the model gives (the image alone for an ONNX model), titled
    with that answer."""
    from bloodcell.evaluation.gradcam import explain_image
    from bloodcell.models.torch_backend import TorchBackend

    torch = backend if isinstance(backend, TorchBackend) else None  # Grad-CAM needs gradients
    labels = list(backend.labels)
    names = short_names(labels)
    rows = []
    for k in range(len(labels)):
        source = next((c.source for c in cases if c.true == k and c.variant == "erased"), None)
        if source is not None:
            picked = {}
            for c, a in zip(cases, answers, strict=True):
                if c.source == source and c.variant not in picked:
                    picked[c.variant] = (c, a)
            rows.append(picked)
    plt = pyplot()
    fig, axes = plt.subplots(
        max(1, len(rows)), len(PICTURED), figsize=(2.6 * len(PICTURED), 2.8 * max(1, len(rows)))
    )
    axes = [axes] if len(rows) <= 1 else axes
    for r, picked in enumerate(rows):
        for j, variant in enumerate(PICTURED):
            ax = axes[r][j]
            ax.axis("off")
            if variant not in picked:
                continue
            case, ans = picked[variant]
            ax.imshow(
                explain_image(torch, case.image, labels[ans.label]).overlay if torch else case.image
            )
            said = "refused" if ans.refused else names[ans.label]
            donor = "in" if variant == "recoloured" else "on"
            extra = f" {donor} {names[case.background]}" if case.background is not None else ""
            ax.set_title(f"{variant}{extra}\n{names[case.true]} -> {said}", fontsize=8)
    fig.suptitle("Audit: Grad-CAM of the class given (true -> answer)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def summary_lines(audit: AuditResult) -> list[str]:
    """Two lines for the console: what erased and swapped images got."""
    v = audit["variants"]
    lines = []
    if "erased" in v:
        e = v["erased"]
        lines.append(
            f"audit: cells erased -> {e['refused']:.1%} refused, {e['accuracy']:.1%} still "
            "given their true class (background reliance)"
        )
    if "swapped" in v:
        s = v["swapped"]
        lines.append(
            f"audit: cells on another class's background -> {s['answered']:.1%} answered; label "
            f"follows the cells {s['follows_cells'] or 0:.1%}, the background "
            f"{s['follows_background'] or 0:.1%}"
        )
    if "recoloured" in v:
        r = v["recoloured"]
        lines.append(
            f"audit: cells in another class's colour -> {r['answered']:.1%} answered; label "
            f"follows the shape {r['follows_shape'] or 0:.1%}, the colour "
            f"{r['follows_colour'] or 0:.1%}"
        )
    hues = [f"{k[4:]}° {v[k]['accuracy']:.1%}" for k in v if k.startswith("hue_")]
    if hues:
        lines.append("audit: hue turned -> right " + ", ".join(hues))
    return lines
