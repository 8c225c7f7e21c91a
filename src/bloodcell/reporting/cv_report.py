"""`report.md` and pictures for a cross-validation (`bloodcell cv`) and for the leakage study
(`bloodcell cv --compare-protocols`): the per-fold tables, the folds' spread, the pooled
confusion matrices, and the protocols side by side."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.records import AuditSummary, CvResult, CvSeed, ProtocolsResult
from bloodcell.reporting.markdown import ci_range, pct
from bloodcell.reporting.plots import plot_confusion, pyplot, short_names
from bloodcell.run_dir import FOLDS_PNG, PROTOCOLS_PNG, CvDir

_SPREAD = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))


def _spread_values(m: Mapping[str, Any]) -> dict[str, tuple[float | None, list[float] | None]]:
    """metric name -> (value, 95% CI) for the fold-spread plot, all on a 0-1 scale."""
    c, ci = m["clinical"], m["ci95"]
    out = {name: (m[key], ci[key]) for key, name in _SPREAD}
    out["sensitivity"] = (c["sensitivity"], ci["sensitivity"])
    out["specificity"] = (c["specificity"], ci["specificity"])
    for lab, r in m["per_class"].items():
        out[f"recall {short_names([lab])[0]}"] = (r["recall"], ci["recall"][lab])
    return out


def plot_fold_spread(cv: CvResult, out: Path) -> Path:
    """Every fold's metrics as dots (one colour per seed) beside the pooled value and its
    interval (black), and each fold's ECE: how much the figure moves from fold to fold."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [5, 1.3]})
    rng = np.random.default_rng(0)
    names = list(_spread_values(cv["seeds"][0]["pooled"]))
    for si, seed in enumerate(cv["seeds"]):
        colour = f"C{si}"
        for fold in seed["folds"]:
            vals = _spread_values(fold)
            xs = np.arange(len(names)) - 0.25 + 0.1 * si + rng.uniform(-0.03, 0.03, len(names))
            ys = [100 * v if v is not None else np.nan for v, _ in (vals[n] for n in names)]
            ax.scatter(
                xs,
                ys,
                s=18,
                color=colour,
                alpha=0.8,
                label=f"folds, seed {seed['seed']}" if fold is seed["folds"][0] else None,
            )
            ax2.scatter(si + rng.uniform(-0.1, 0.1), fold["ece"], s=18, color=colour)
        pooled = _spread_values(seed["pooled"])
        for j, n in enumerate(names):
            v, ci = pooled[n]
            if v is None:
                continue
            err = [[100 * (v - ci[0])], [100 * (ci[1] - v)]] if ci else None
            ax.errorbar(
                j + 0.2 + 0.1 * si,
                100 * v,
                yerr=err,
                fmt="D",
                color=colour,
                mec="black",
                ms=6,
                capsize=3,
                label=f"pooled, seed {seed['seed']}, 95% CI (groups)" if j == 0 else None,
            )
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set(
        ylabel="% (macro-F1 x 100)",
        title=f"{len(cv['seeds'][0]['folds'])} folds: spread and pooled value",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax2.set_xticks(range(len(cv["seeds"])), [f"seed {s['seed']}" for s in cv["seeds"]])
    ax2.set(title="ECE per fold", ylim=(0, None), xlim=(-0.5, len(cv["seeds"]) - 0.5))
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell(m: Mapping[str, Any], key: str) -> str:
    """'98.6% (97.9–99.2%)' for a metric of `cv_metrics` with its group-bootstrap interval."""
    ci = m["ci95"]
    if key in ("sensitivity", "specificity"):
        return f"{pct(m['clinical'][key])} ({ci_range(ci[key])})"
    if key == "macro_f1":
        return f"{m[key]:.3f} ({ci_range(ci[key], percent=False)})"
    if key == "ece":
        return f"{m[key]:.3f} ({ci_range(ci[key], percent=False)})"
    return f"{pct(m[key])} ({ci_range(ci[key])})"


def _fold_tables(seed: CvSeed) -> list[str]:
    keys = ("accuracy", "macro_f1", "sensitivity", "specificity", "ece")
    lines = [
        "| fold | test images | accuracy | macro-F1 | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(str(f["fold"]), f) for f in seed["folds"]] + [("**pooled**", seed["pooled"])]
    for name, m in rows:
        lines.append(f"| {name} | {m['n']} | " + " | ".join(_cell(m, k) for k in keys) + " |")
    labels = list(seed["pooled"]["per_class"])
    lines += [
        "",
        "Recall per class (95% CI):",
        "",
        "| fold | " + " | ".join(short_names(labels)) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for name, m in rows:
        cells = [
            f"{pct(m['per_class'][lab]['recall'])} ({ci_range(m['ci95']['recall'][lab])})"
            for lab in labels
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    fa = seed["fold_accuracy"]
    lines += [
        "",
        f"Fold accuracy: mean {pct(fa['mean'])}, SD {100 * fa['sd']:.2f} points, "
        f"range {pct(fa['min'])}–{pct(fa['max'])}.",
    ]
    return lines


def write_cv_report(cv: CvResult, out_dir: str | Path) -> Path:
    """`report.md` for a cross-validation (`bloodcell cv`): headline, per-fold tables, the
    pooled confusion matrix per seed and the folds' spread (PNGs beside it)."""
    out = Path(out_dir)
    plot_fold_spread(cv, CvDir(out).folds_png)
    s = cv["settings"]
    lines = [
        f"# Cross-validation: {s['folds']} folds, recipe `{cv['recipe']}`",
        "",
        *_cv_method(cv),
        "",
        *_cv_headline(cv),
        "",
        "## Spread over folds",
        "",
        f"![folds]({FOLDS_PNG})",
        "",
    ]
    for seed in cv["seeds"]:
        lines += _seed_section(seed, out)
    lines += [
        "## Settings",
        "",
        "```json",
        json.dumps({"cv": s, "training": cv["config"]}, indent=2, sort_keys=True),
        "```",
        "",
    ]
    path = CvDir(out).report
    path.write_text("\n".join(lines))
    return path


def _cv_method(cv: CvResult) -> list[str]:
    """How the folds were made and what the intervals cover."""
    s, d = cv["settings"], cv["data"]
    grouping = {
        "image": "none (random image-level folds: copies of an image can be in train and test)",
        "exact": "byte-identical copies kept in one fold",
        "near": "exact and near-duplicate copies kept in one fold",
        "block": f"blocks of {s['block_size']} consecutive file numbers of a class folder, "
        "and duplicates, kept in one fold",
        "run": f"runs of {s['block_size']} consecutive file numbers of a class folder (about "
        "one patient's images), and duplicates, kept in one fold",
    }[s["grouping"]]
    return [
        f"{d['images']} images ({d['unreadable']} unreadable, left out), each tested once per "
        f"seed. Grouping: {grouping}. Folds are stratified by class; each fold's validation "
        f"part ({s['val_fraction']:.0%} of its training images per class) is taken from its "
        "training folds the same way"
        + (
            ", and fits the temperature (calibration) before the test part is predicted."
            if s["calibrate"]
            else "."
        ),
        "",
        f"Intervals: 95% percentile bootstrap over {d['ci_unit']} ({d['ci_groups']} groups, "
        "1000 resamples): every resample draws whole groups with replacement, because copies "
        "of one image are not independent evidence. They cover which images were tested, not "
        "the training's randomness (compare seeds for that).",
    ]


def _cv_headline(cv: CvResult) -> list[str]:
    """The pooled figures of every seed, and their spread over seeds."""
    lines = []
    for seed in cv["seeds"]:
        p = seed["pooled"]
        lines.append(
            f"- seed {seed['seed']}: **pooled accuracy {_cell(p, 'accuracy')}**, macro-F1 "
            f"{_cell(p, 'macro_f1')}, sensitivity {_cell(p, 'sensitivity')}, specificity "
            f"{_cell(p, 'specificity')}, ECE {_cell(p, 'ece')}"
        )
    if "over_seeds" in cv:
        o = cv["over_seeds"]
        lines += [
            "",
            f"Over {len(cv['seeds'])} seeds: pooled accuracy mean {pct(o['accuracy_mean'])}, "
            f"SD {100 * o['accuracy_sd']:.2f} points, range {pct(o['accuracy_min'])}–"
            f"{pct(o['accuracy_max'])}.",
        ]
    return lines


def _seed_section(seed: CvSeed, out: Path) -> list[str]:
    """One seed: its fold tables, pooled confusion matrix (drawn now) and fold manifests."""
    png = CvDir(out).confusion_png(seed["seed"])
    plot_confusion(seed["pooled"]["confusion_matrix"], seed["pooled"]["labels"], png)
    lines = [f"## Seed {seed['seed']}", "", *_fold_tables(seed), "",
             "Pooled confusion matrix (all out-of-fold predictions):", "",
             f"![pooled confusion matrix]({png.name})", "", "Fold manifests:", ""]  # fmt: skip
    lines += [f"- `{f['manifest']}` sha256 `{f['manifest_sha256']}`" for f in seed["folds"]]
    return [*lines, "", *_audit_section(seed)]


def _audit_section(seed: CvSeed) -> list[str]:
    """The shortcut audit of every fold's test part, pooled (none for folds run before it)."""
    from bloodcell.evaluation.shortcut_audit import targets
    from bloodcell.reporting.audit_report import SECTION, report_lines

    audit = seed.get("audit")
    if not audit:
        return []
    result: AuditSummary = {
        "split": "out-of-fold test",
        "n_images": seed["pooled"]["n"],
        "variants": audit,
        "targets": targets(audit),
    }
    return [f"### {SECTION} (pooled over folds)", "", *report_lines(result), ""]


def plot_protocols(result: ProtocolsResult, out: Path) -> Path:
    """Pooled accuracy of each protocol with its interval, and its difference from (a)."""
    plt = pyplot()
    rows: Sequence[Mapping[str, Any]] = result["protocols"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["protocol"] for r in rows]
    for ax_, key, ci_key, title in (
        (ax, "accuracy", "accuracy_ci95", "pooled out-of-fold accuracy"),
        (ax2, "difference_vs_image", "difference_ci95", "difference from (a), paired"),
    ):
        vals = np.array([100 * r[key] for r in rows])
        lo = np.array(
            [100 * r[ci_key][0] if r[ci_key] else v for r, v in zip(rows, vals, strict=True)]
        )
        hi = np.array(
            [100 * r[ci_key][1] if r[ci_key] else v for r, v in zip(rows, vals, strict=True)]
        )
        ax_.errorbar(range(len(rows)), vals, yerr=[vals - lo, hi - vals], fmt="o", capsize=4)
        ax_.set_xticks(range(len(rows)), names)
        ax_.set(title=title, ylabel="% points" if ax_ is ax2 else "%")
        ax_.grid(axis="y", alpha=0.3)
    ax2.axhline(0, color="black", lw=0.8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_protocol_report(result: ProtocolsResult, out_dir: str | Path) -> Path:
    """`report.md` for `bloodcell cv --compare-protocols`: the protocols side by side."""
    out = Path(out_dir)
    plot_protocols(result, CvDir(out).protocols_png)
    b = result["bootstrap"]
    lines = [
        "# How much a leaky split overstates accuracy",
        "",
        f"The same recipe (`{result['recipe']}`), {result['folds']}-fold cross-validation, "
        f"seed(s) {', '.join(map(str, result['seeds']))}, on the same {result['images']} "
        "images under three protocols. Accuracy is pooled over all out-of-fold predictions "
        "(averaged over seeds).",
        "",
        "| protocol | pooled accuracy (95% CI) | difference vs (a) (95% CI) | macro-F1 | report |",
        "|---|---|---|---|---|",
    ]
    for r in result["protocols"]:
        lo, hi = r["difference_ci95"] or (np.nan, np.nan)
        diff = (
            "—"
            if r["protocol"] == "image"
            else (
                f"{100 * r['difference_vs_image']:+.2f} points ({100 * lo:+.2f} to {100 * hi:+.2f})"
            )
        )
        lines.append(
            f"| {r['description']} | {pct(r['accuracy'])} ({ci_range(r['accuracy_ci95'])}) | "
            f"{diff} | {r['macro_f1']:.3f} | [{r['report']}]({r['report']}) |"
        )
    lines += [
        "",
        "A negative difference is how much the random image-level split (a) overstates the "
        "accuracy measured when copies cannot be on both sides.",
        "",
        f"Intervals: {b['method']}, {b['resamples']} resamples (seed {b['seed']}) over "
        f"{b['groups']} groups ({b['unit']}; the coarsest grouping, which contains every "
        "duplicate group). Each resample draws whole groups with replacement and scores every "
        "protocol on the same draw, so the difference's interval is paired. It covers which "
        "images were tested, not the training's randomness: more --seeds show that.",
        "",
        f"![protocols]({PROTOCOLS_PNG})",
        "",
    ]
    path = CvDir(out).report
    path.write_text("\n".join(lines))
    return path
