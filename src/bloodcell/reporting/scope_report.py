"""How the out-of-scope folders' result (`evaluation.scope_folders.scope_folders_result`) is shown:
`ood.json`, the score histogram `ood_scores.png`, and the markdown section that the split's
report, the run's report and the model card include."""

from __future__ import annotations

from pathlib import Path

from bloodcell.evaluation.scope_folders import malignant_share
from bloodcell.records import ScopeFoldersResult
from bloodcell.reporting.markdown import upsert_section
from bloodcell.reporting.plots import plot_scope_scores
from bloodcell.run_dir import SCOPE_FOLDERS_JSON, SCOPE_FOLDERS_PNG, RunDir

SECTION_TITLE = "Out-of-scope folders"


def write_scope_folders(
    result: ScopeFoldersResult, out: Path, run: RunDir, split: str, beside_run: bool
) -> None:
    """ood.json, the histogram, and the section in the split's report.md, which links the
    histogram relative to itself when it is in the run (so the run can move), else absolutely."""
    from bloodcell.run_dir import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SCOPE_FOLDERS_JSON, result)
    plot_scope_scores(result, out / SCOPE_FOLDERS_PNG)
    report = run.eval_report(split)
    report.parent.mkdir(parents=True, exist_ok=True)
    image = (
        run.link(run.scope_folders_png, report.parent)
        if beside_run
        else str((out / SCOPE_FOLDERS_PNG).resolve())
    )
    upsert_section(report, SECTION_TITLE, report_lines(result, image))


def report_lines(result: ScopeFoldersResult, image: str) -> list[str]:
    """The markdown section: one row per folder, then the histogram."""
    s = result["in_scope"]
    lines = [
        f"Each folder scored by the out-of-scope detector (`{result['backend']}`, threshold "
        f"{result['threshold']:.4f}) against the {s['n']} in-scope {result['split']} images "
        f"({s['flagged']} of them beyond its threshold). *Refused*: given no class, as "
        "`predict` refuses (no white cell found, unlike the training images, or a white cell "
        "of a type the model does not classify); *held back*: for a folder the model was "
        "trained on as outliers, the files training never saw. *Malignant*: given a "
        "malignant class. AUROC: how well the detector's score ranks the folder above the "
        "in-scope images (1 = perfectly). FPR at 95% TPR: the share of in-scope images a "
        "threshold catching 95% of the folder would refuse.",
        "",
        "| folder | images | refused | held back: refused | malignant | why refused | AUROC "
        "| FPR at 95% TPR | unreadable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["folders"]:
        rate = "n/a" if r["flagged_rate"] is None else f"{r['flagged_rate']:.1%}"
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.4f}"
        fpr = "n/a" if r["fpr_at_95_tpr"] is None else f"{r['fpr_at_95_tpr']:.1%}"
        kept = r.get("held_out")
        held = f"{kept['flagged']}/{kept['n']}" if kept else "not trained on"
        why = ", ".join(f"{k} {n}" for k, n in sorted((r.get("reasons") or {}).items()))
        lines.append(
            f"| `{r['folder']}` | {r['n']} | {r['flagged']} ({rate}) | {held} | "
            f"{malignant_share(r):.1%} | {why or '-'} | {auroc} | {fpr} | "
            f"{len(r['unreadable'])} |"
        )
    return [*lines, "", f"![out-of-scope scores]({image})"]
