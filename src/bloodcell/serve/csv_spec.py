"""The CSV columns of `bloodcell predict --format csv`, told to clients in API terms.

An API client can write the command line's table from this list (`/v1/model` -> `csv`): the
columns, the order and the formatting of `predict.columns`, the one source of truth (the page
asks `POST /v1/summary` for the CSV itself). Each column says which key of an API result holds
its value (`path` is `filename` there; `engine` is the response's, once for all its results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TypedDict

from bloodcell.predict.columns import group_csv_header, prediction_columns
from bloodcell.predict.records import Prediction


class ColumnSpec(TypedDict):
    """One CSV column in API terms (the `CsvColumn` schema)."""

    name: str
    key: str
    kind: str
    label: str | None


class CsvColumns(TypedDict):
    """`csv` in `/v1/model` (the `CsvSpec` schema)."""

    columns: list[ColumnSpec]
    group_columns: list[ColumnSpec]


def _api_keys() -> dict[str, str]:
    """Record field name -> the key of an API result that holds it (its own name when the
    record keeps it out of the API: the client has it from elsewhere, e.g. `engine`)."""
    return {f.name: f.metadata["api"] or f.name for f in fields(Prediction)}


def csv_columns(labels: Sequence[str]) -> list[ColumnSpec]:
    keys = _api_keys()
    return [
        {"name": c.name, "key": keys[c.field], "kind": c.kind, "label": c.label}
        for c in prediction_columns(labels)
    ]


def group_csv_columns(labels: Sequence[str]) -> list[ColumnSpec]:
    """The `--group-by-folder` columns as keys of a group summary (`grouping.FolderSummary`):
    `folder`, the `n_*` counts, `counts[label]` and `mean_probabilities[label]`."""
    out = []
    for name in group_csv_header(labels):
        column: ColumnSpec = {"name": name, "key": name, "kind": "int", "label": None}
        for prefix, key, kind in (
            ("count_", "counts", "int"),
            ("mean_prob_", "mean_probabilities", "float"),
        ):
            if name.startswith(prefix) and name[len(prefix) :] in labels:
                column = {"name": name, "key": key, "kind": kind, "label": name[len(prefix) :]}
        if name == "folder":
            column["kind"] = "string"
        out.append(column)
    return out


def csv_spec(labels: Sequence[str]) -> CsvColumns:
    return {"columns": csv_columns(labels), "group_columns": group_csv_columns(labels)}
