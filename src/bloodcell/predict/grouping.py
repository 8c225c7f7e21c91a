"""Running counts as batches stream by: per folder (`--group-by-folder`) and for the whole run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell.predict.records import Prediction
from bloodcell.records import FolderGroup, RunTotals


@dataclass
class FolderSummary:
    """Running per-folder totals (per patient or slide): counts and mean probabilities."""

    folder: str
    labels: Sequence[str]
    n_images: int = 0
    n_errors: int = 0
    n_uncertain: int = 0
    n_out_of_scope: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    prob_sum: np.ndarray | None = None

    def add(self, p: Prediction) -> None:
        if not p.ok:
            self.n_errors += 1
            return
        self.n_images += 1
        self.n_uncertain += int(bool(p.uncertain))
        self.n_out_of_scope += int(bool(p.out_of_scope))
        if p.label is not None:
            self.counts[p.label] = self.counts.get(p.label, 0) + 1
        assert p.probabilities is not None  # every answered image has them
        row = np.array([p.probabilities[lb] for lb in self.labels], dtype=np.float64)
        self.prob_sum = row if self.prob_sum is None else self.prob_sum + row

    def to_dict(self) -> FolderGroup:
        mean = None
        if self.prob_sum is not None:
            means = self.prob_sum / self.n_images
            mean = {lb: round(float(v), 6) for lb, v in zip(self.labels, means, strict=True)}
        return {
            "folder": self.folder,
            "n_images": self.n_images,
            "n_errors": self.n_errors,
            "n_uncertain": self.n_uncertain,
            "n_out_of_scope": self.n_out_of_scope,
            "counts": {lb: self.counts.get(lb, 0) for lb in self.labels},
            "mean_probabilities": mean,
        }


class FolderGrouper:
    """Accumulates FolderSummary per parent folder as batches stream by."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.groups: dict[str, FolderSummary] = {}

    def add(self, preds: Iterable[Prediction]) -> None:
        for p in preds:
            folder = str(Path(p.path).parent)
            self.groups.setdefault(folder, FolderSummary(folder, self.labels)).add(p)

    def summaries(self) -> list[FolderGroup]:
        return [self.groups[k].to_dict() for k in sorted(self.groups)]


def group_by_folder(preds: Iterable[Prediction], labels: Sequence[str]) -> list[FolderGroup]:
    """Per-folder summaries (see GROUP in the package docstring)."""
    grouper = FolderGrouper(labels)
    grouper.add(preds)
    return grouper.summaries()


class Totals:
    """Counts for the summary line and the JSON `summary`."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.n_files = self.n_errors = self.n_uncertain = self.n_out_of_scope = 0
        self.n_skipped = 0  # already in the output (--resume); not part of the JSON summary
        self.counts = dict.fromkeys(self.labels, 0)

    def add(self, preds: Iterable[Prediction]) -> None:
        for p in preds:
            self.n_files += 1
            if not p.ok:
                self.n_errors += 1
                continue
            self.n_uncertain += int(bool(p.uncertain))
            self.n_out_of_scope += int(bool(p.out_of_scope))
            if p.label is not None:
                self.counts[p.label] += 1

    def to_dict(self) -> RunTotals:
        return {
            "n_files": self.n_files,
            "n_predicted": self.n_files - self.n_errors,
            "n_errors": self.n_errors,
            "n_uncertain": self.n_uncertain,
            "n_out_of_scope": self.n_out_of_scope,
            "counts": dict(self.counts),
        }


def format_totals(t: Totals) -> str:
    """The one-line summary printed on stderr after a run."""
    predicted = t.n_files - t.n_errors
    line = (
        f"{t.n_files} file(s): {predicted} predicted, {t.n_out_of_scope} out of scope, "
        f"{t.n_uncertain} uncertain, {t.n_errors} error(s)"
    )
    return line + (f"; {t.n_skipped} already in the output" if t.n_skipped else "")
