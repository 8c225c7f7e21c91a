"""Writers for the text formats (table, CSV, JSON, JSON Lines): batch by batch, flushed as they go.

Parquet is in `writers_parquet`; the schemas are in the package docstring.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO

from bloodcell.errors import BloodcellError
from bloodcell.models.backends import Backend
from bloodcell.predict.columns import csv_header, csv_row, group_csv_header, group_csv_row
from bloodcell.predict.grouping import Totals
from bloodcell.predict.records import Prediction
from bloodcell.records import FolderGroup, OutputMeta

FORMATS = ("table", "csv", "json", "jsonl", "parquet")
#: Formats `infer_format` recognises from the --out suffix.
SUFFIX_FORMATS = ("csv", "json", "jsonl", "parquet")


class Writer:
    """Writes predictions batch by batch; `finish` adds groups and closing text. `meta` is the
    output's head: JSON and Parquet write it, the other formats may go without (None)."""

    def __init__(self, backend: Backend, meta: OutputMeta | None) -> None:
        self.labels = list(backend.labels)
        self.backend = backend
        self.meta = meta

    def write(self, preds: list[Prediction]) -> None:
        raise NotImplementedError

    def finish(self, groups: list[FolderGroup] | None, totals: Totals) -> None:
        pass


class TextWriter(Writer):
    """A writer to one text stream (a file or stdout)."""

    def __init__(self, fh: IO[str], backend: Backend, meta: OutputMeta | None) -> None:
        super().__init__(backend, meta)
        self.fh = fh


class TableWriter(TextWriter):
    def __init__(self, fh: IO[str], backend: Backend, meta: OutputMeta | None) -> None:
        super().__init__(fh, backend, meta)
        self.fh.write(f"{'PREDICTION':<22} {'CONF':>6}  {'FLAG':<9} PATH\n")

    def write(self, preds: list[Prediction]) -> None:
        for p in preds:
            if not p.ok:
                self.fh.write(f"{'ERROR':<22} {'':>6}  {'':<9} {p.path}: {p.error}\n")
            elif p.out_of_scope:
                self.fh.write(f"{'OUT OF SCOPE':<22} {'':>6}  {'':<9} {p.path}\n")
            else:
                flag = "uncertain" if p.uncertain else ""
                self.fh.write(f"{p.display_name:<22} {p.confidence:>6.1%}  {flag:<9} {p.path}\n")
            if p.ok and p.note and not p.out_of_scope:
                self.fh.write(f"{'':<22} {'':>6}  {'':<9}   set: {p.note}\n")
        self.fh.flush()

    def finish(self, groups: list[FolderGroup] | None, totals: Totals) -> None:
        if not groups:
            return
        short = {lb: self.backend.display_names.get(lb, lb) for lb in self.labels}
        self.fh.write("\nPer folder (counts; mean probability):\n")
        for g in groups:
            mean = g["mean_probabilities"] or {}
            parts = [f"{short[lb]} {g['counts'][lb]} ({mean.get(lb, 0):.0%})" for lb in self.labels]
            head = (
                f"{g['folder']}: {g['n_images']} images, {g['n_uncertain']} uncertain, "
                f"{g['n_out_of_scope']} out of scope, "
            )
            self.fh.write(head + f"{g['n_errors']} errors; " + "; ".join(parts) + "\n")


class _RowWriter(TextWriter):
    """Row formats: predictions one row at a time; groups to `groups_path`, or after a blank
    line on the same stream when there is no file to put beside the output."""

    def __init__(
        self, fh: IO[str], backend: Backend, meta: OutputMeta | None, groups_path: Path | None
    ) -> None:
        super().__init__(fh, backend, meta)
        self.groups_path = groups_path

    def write_groups(self, fh: IO[str], groups: list[FolderGroup]) -> None:
        raise NotImplementedError

    def finish(self, groups: list[FolderGroup] | None, totals: Totals) -> None:
        if groups is None:
            return
        if self.groups_path is None:
            self.fh.write("\n")
            self.write_groups(self.fh, groups)
        else:
            with self.groups_path.open("w", newline="", encoding="utf-8") as gh:
                self.write_groups(gh, groups)


class CsvWriter(_RowWriter):
    def __init__(
        self,
        fh: IO[str],
        backend: Backend,
        meta: OutputMeta | None,
        groups_path: Path | None = None,
        header: bool = True,
    ) -> None:
        super().__init__(fh, backend, meta, groups_path)
        self.csv = csv.writer(fh, lineterminator="\n")
        if header:  # not when appending to a resumed file
            self.csv.writerow(csv_header(self.labels))

    def write(self, preds: list[Prediction]) -> None:
        self.csv.writerows(csv_row(p, self.labels) for p in preds)
        self.fh.flush()

    def write_groups(self, fh: IO[str], groups: list[FolderGroup]) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(group_csv_header(self.labels))
        w.writerows(group_csv_row(g, self.labels) for g in groups)


class JsonlWriter(_RowWriter):
    """JSON Lines: one prediction object per line, flushed after every batch.

    A reader can follow the stream line by line, and a killed run leaves whole lines up to the
    last newline, which is what `--resume` continues from.
    """

    def write(self, preds: list[Prediction]) -> None:
        self.fh.writelines(json.dumps(p.to_dict()) + "\n" for p in preds)
        self.fh.flush()

    def write_groups(self, fh: IO[str], groups: list[FolderGroup]) -> None:
        fh.writelines(json.dumps(g) + "\n" for g in groups)


class JsonWriter(TextWriter):
    """One JSON document, written member by member as the predictions stream by.

    Every value is encoded whole by `json.dumps`; only the document's own braces, brackets and
    commas are written here, so memory does not grow with the file count.
    """

    def __init__(self, fh: IO[str], backend: Backend, meta: OutputMeta) -> None:
        super().__init__(fh, backend, meta)
        head = [_member(key, value, pretty=True) for key, value in meta.items()]
        self.fh.write("{" + ",".join([*head, '\n  "predictions": [']))
        self.first = True

    def write(self, preds: list[Prediction]) -> None:
        for p in preds:
            self.fh.write(("\n    " if self.first else ",\n    ") + json.dumps(p.to_dict()))
            self.first = False
        self.fh.flush()

    def finish(self, groups: list[FolderGroup] | None, totals: Totals) -> None:
        self.fh.write("\n  ]")
        if groups is not None:
            self.fh.write("," + _member("groups", groups))
        self.fh.write("," + _member("summary", totals.to_dict()) + "\n}\n")


def _member(key: str, value: object, pretty: bool = False) -> str:
    """`"key": value` as a member of the top-level object, nested lines indented beneath it.

    JSON text holds no raw newline inside strings, so the newlines are the indentation's own.
    """
    text = json.dumps(value, indent=2 if pretty else None)
    return f"\n  {json.dumps(key)}: " + text.replace("\n", "\n  ")


def make_writer(
    fmt: str,
    fh: IO[str],
    backend: Backend,
    meta: OutputMeta,
    out: Path | None,
    header: bool = True,
) -> Writer:
    """The writer for a text format (Parquet has its own, it writes a folder)."""
    if fmt == "json":
        return JsonWriter(fh, backend, meta)
    if fmt == "csv":
        groups_path = out.with_suffix(".groups.csv") if out is not None else None
        return CsvWriter(fh, backend, meta, groups_path, header=header)
    if fmt == "jsonl":
        groups_path = out.with_suffix(".groups.jsonl") if out is not None else None
        return JsonlWriter(fh, backend, meta, groups_path)
    if fmt == "table":
        return TableWriter(fh, backend, meta)
    raise BloodcellError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def infer_format(fmt: str | None, out: Path | None) -> str:
    """--format wins; else the --out suffix (.csv, .json, .jsonl, .parquet); else a table."""
    if fmt:
        return fmt
    if out is not None and out.suffix.lower().lstrip(".") in SUFFIX_FORMATS:
        return out.suffix.lower().lstrip(".")
    return "table"
