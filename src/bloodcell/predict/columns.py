"""The CSV columns of a prediction (also the Parquet ones) and of a folder summary (also what
`--resume` checks)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from bloodcell.predict.records import BOOL, FLOAT, INT, JOINED, PER_LABEL, Prediction
from bloodcell.records import FolderGroup


@dataclass(frozen=True)
class Column:
    """One CSV/Parquet column of a prediction, read from the Prediction field `field`."""

    name: str
    field: str
    kind: str  # STRING, FLOAT, BOOL, INT or JOINED (`records`)
    label: str | None = None  # set for a per-label column: the value is field[label]

    def value(self, p: Prediction) -> Any:
        v = getattr(p, self.field)
        return v if self.label is None else (v or {}).get(self.label)


def prediction_columns(labels: Sequence[str]) -> list[Column]:
    """The columns in `Prediction` field order; fields that are not columns are skipped."""
    return list(_columns(tuple(labels)))


@functools.cache
def _columns(labels: tuple[str, ...]) -> tuple[Column, ...]:
    """`prediction_columns`, made once per label set: every row of a large folder asks."""
    out: list[Column] = []
    for f in fields(Prediction):
        kind, prefix = f.metadata["column"], f.metadata["prefix"]
        if kind == PER_LABEL:
            out += [Column(f"{prefix}_{lb}", f.name, FLOAT, lb) for lb in labels]
        elif kind is not None:
            out.append(Column(f.name, f.name, kind))
    return tuple(out)


def csv_header(labels: Sequence[str]) -> list[str]:
    return [c.name for c in prediction_columns(labels)]


def csv_row(p: Prediction, labels: Sequence[str]) -> list[str]:
    """One CSV row; `prediction_set` is its labels joined by '|'."""
    if not p.ok:  # an error row says only which file and why
        p = Prediction(path=p.path, error=p.error)
    return [_text(c.kind, c.value(p)) for c in _columns(tuple(labels))]


def group_csv_header(labels: Sequence[str]) -> list[str]:
    return (
        ["folder", "n_images", "n_errors", "n_uncertain", "n_out_of_scope"]
        + [f"count_{lb}" for lb in labels]
        + [f"mean_prob_{lb}" for lb in labels]
    )


def group_csv_row(g: FolderGroup, labels: Sequence[str]) -> list[str | int]:
    mean = g["mean_probabilities"]
    row: list[str | int] = [g["folder"], g["n_images"], g["n_errors"], g["n_uncertain"]]
    row += [g["n_out_of_scope"], *(g["counts"][lb] for lb in labels)]
    return row + [f"{mean[lb]:.6f}" if mean else "" for lb in labels]


def _text(kind: str, v: Any) -> str:
    if kind == FLOAT:
        return _num(v)
    if kind == JOINED:
        return "|".join(v or [])
    if kind == BOOL:
        return _bool(v)
    if kind == INT:
        return "" if v is None else str(int(v))
    return "" if v is None else v


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _bool(v: bool | None) -> str:
    return "" if v is None else str(bool(v)).lower()
