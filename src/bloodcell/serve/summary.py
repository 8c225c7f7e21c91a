"""Results a client kept, tabulated by the command line's own code: the totals, the
per-folder summaries of `predict --group-by-folder` and both CSV files.

The page keeps a session's results and sends them here after every batch, so its counts, its
per-case table and its downloads are `bloodcell predict`'s, not a second implementation. The
server keeps nothing: the answer depends only on the results sent.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypedDict

from bloodcell.models.backends import Backend
from bloodcell.predict.grouping import Totals, group_by_folder
from bloodcell.predict.records import Prediction
from bloodcell.predict.writers import CsvWriter
from bloodcell.records import FolderGroup, RunTotals

#: API key of a result -> the record field it fills (`filename` is `path`), with the two
#: fields an API result carries outside the record's API names.
_FIELDS = {
    f.metadata["api"] or f.name: f.name for f in fields(Prediction) if f.metadata["api"] is not None
}
_FIELDS |= {"engine": "engine", "error": "error"}


class SummaryError(ValueError):
    """A result that cannot be tabulated; the message says which and why."""


def to_record(result: dict[str, Any], labels: Sequence[str]) -> Prediction:
    """An API result (with its response's `engine`) as the command line's record. A result
    with an `error` keeps only its path and error, as `predict` writes such a row."""
    values = {_FIELDS[k]: v for k, v in result.items() if k in _FIELDS}
    if values.get("error"):
        return Prediction(path=values["path"], error=values["error"])
    probs = values.get("probabilities") or {}
    missing = [lb for lb in labels if lb not in probs]
    if missing:
        raise SummaryError(
            f"{values['path']}: a result without an error needs a probability for every "
            f"class; missing {', '.join(missing)}"
        )
    if values.get("label") is not None and values["label"] not in labels:
        raise SummaryError(
            f"{values['path']}: unknown class {values['label']!r}; one of {', '.join(labels)}"
        )
    return Prediction(**values)


class SummaryRecord(TypedDict):
    """What `summarize` returns (the `Summary` schema)."""

    totals: RunTotals
    groups: list[FolderGroup]
    csv: str
    groups_csv: str


def summarize(results: Sequence[dict[str, Any]], backend: Backend) -> SummaryRecord:
    """Totals, groups and both CSV texts of `results` (the `Summary` schema)."""
    labels = list(backend.labels)
    records = [to_record(r, labels) for r in results]
    totals = Totals(labels)
    totals.add(records)
    groups = group_by_folder(records, labels)
    rows, grouped = io.StringIO(), io.StringIO()
    writer = CsvWriter(rows, backend, meta=None)
    writer.write(records)
    writer.write_groups(grouped, groups)
    return {
        "totals": totals.to_dict(),
        "groups": groups,
        "csv": rows.getvalue(),
        "groups_csv": grouped.getvalue(),
    }
