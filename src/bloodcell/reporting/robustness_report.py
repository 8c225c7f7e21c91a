"""How a robustness result (`evaluation.robustness.robustness_result`) is shown:
`robustness.json`, `robustness.csv`, the plot `robustness.png`, and the markdown section that
the split's report, the run's report and the model card include. Pure functions of the result
(as saved in `robustness.json`), so the card can render a result read back from disk; the
accuracy bar is the one the result records.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.data.corruptions import MIDDLE_SEVERITY
from bloodcell.records import RobustnessResult, RobustnessRow
from bloodcell.reporting.markdown import upsert_section
from bloodcell.reporting.plots import pyplot
from bloodcell.run_dir import REPORT_MD, ROBUSTNESS_CSV, ROBUSTNESS_JSON, ROBUSTNESS_PNG

SECTION_TITLE = "Robustness"
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


def write_robustness(result: RobustnessResult, out: Path) -> None:
    """robustness.json, robustness.csv, robustness.png and the report.md section in `out`."""
    from bloodcell.run_dir import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ROBUSTNESS_JSON, result)
    write_csv(out / ROBUSTNESS_CSV, [result["clean"], *result["results"]])
    plot_robustness(result, out / ROBUSTNESS_PNG)
    upsert_section(out / REPORT_MD, SECTION_TITLE, report_lines(result))


def write_csv(path: Path, rows: Sequence[RobustnessRow]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for r in rows:
            lo, hi = r["accuracy_ci95"] or (None, None)
            values = {**r, "accuracy_ci_low": lo, "accuracy_ci_high": hi}
            w.writerow(["" if values[k] is None else _csv_value(values[k]) for k in CSV_FIELDS])


def _csv_value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _grid(result: RobustnessResult) -> tuple[list[str], list[int], np.ndarray]:
    """(corruption names, severities, accuracy matrix with NaN where not run)."""
    names = list(dict.fromkeys(r["corruption"] for r in result["results"]))  # run order
    sevs = sorted({r["severity"] for r in result["results"]})
    acc = np.full((len(names), len(sevs)), np.nan)
    for r in result["results"]:
        acc[names.index(r["corruption"]), sevs.index(r["severity"])] = r["accuracy"]
    return names, sevs, acc


def plot_robustness(result: RobustnessResult, out: Path) -> Path:
    """Accuracy vs severity per corruption (left) and the same numbers as a heatmap (right)."""
    from matplotlib.colors import TwoSlopeNorm

    plt = pyplot()
    names, sevs, acc = _grid(result)
    clean, target = result["clean"]["accuracy"], result["target_accuracy"]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(12, 0.45 * len(names) + 3), gridspec_kw={"width_ratios": [3, 2]}
    )
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        ax.plot([0, *sevs], [clean, *acc[i]], marker="o", color=cmap(i % 10), label=name)
    ax.axhline(target, color="k", ls="--", lw=0.8, label=f"{target:.0%} target")
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
    norm = TwoSlopeNorm(vmin=0.25, vcenter=target, vmax=1.0)
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


def _cell(r: RobustnessRow | None, target: float) -> str:
    if r is None:
        return "–"
    text = f"{r['setting']}: {r['accuracy']:.1%} (F1 {r['macro_f1']:.3f})"
    text = f"**{text}**" if r["accuracy"] < target else text
    if r.get("out_of_scope_rate") is not None:
        text += f"; {r['out_of_scope_rate']:.1%} out of scope"
    return text


def report_lines(result: RobustnessResult, image: str = ROBUSTNESS_PNG) -> list[str]:
    """The markdown section: what was done, the worst middle case, the table and the plot
    (`image`: the plot's path relative to the report that gets these lines)."""
    names, sevs, _ = _grid(result)
    by = {(r["corruption"], r["severity"]): r for r in result["results"]}
    clean = result["clean"]
    worst = result["worst_middle"]
    below = result["below_target_middle"]
    target = result["target_accuracy"]
    lines = [
        f"The {result['split']} split ({result['n']} images) re-evaluated under simulated "
        f"changes of stain, light, focus, compression and resolution (model `{result['model']}`, "
        f"{result['backend']}; corruption seed {result['seed']}; parameters in "
        "`bloodcell.data.corruptions`). Clean accuracy "
        f"{clean['accuracy']:.1%} (macro-F1 {clean['macro_f1']:.3f}). Cells: setting, accuracy, "
        f"macro-F1 (bold = below the {target:.0%} target) and the share the "
        "out-of-scope detector refused (these images are in scope: it should stay small).",
        "",
    ]
    if worst:
        lines += [
            f"**Worst middle-severity case: {worst['corruption']} {worst['setting']}, accuracy "
            f"{worst['accuracy']:.1%}** (macro-F1 {worst['macro_f1']:.3f}; clean "
            f"{clean['accuracy']:.1%}). "
            + (
                f"{len(below)} of {len(names)} corruptions fall below {target:.0%} at "
                f"the middle severity: {', '.join(below)}."
                if below
                else f"Every corruption stays at or above {target:.0%} at the middle severity."
            ),
            "",
        ]
    head = [f"severity {s}" + (" (middle)" if s == MIDDLE_SEVERITY else "") for s in sevs]
    lines += [
        "| corruption | " + " | ".join(head) + " |",
        "|---" * (len(sevs) + 1) + "|",
    ]
    for name in names:
        cells = " | ".join(_cell(by.get((name, s)), target) for s in sevs)
        lines.append(f"| {name} | {cells} |")
    lines += ["", f"![robustness]({image})"]
    return lines
