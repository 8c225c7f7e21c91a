"""Parquet output: a dataset folder of part files, each complete or absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bloodcell.models.backends import Backend
from bloodcell.predict.columns import Column, prediction_columns
from bloodcell.predict.grouping import Totals
from bloodcell.predict.records import BOOL, FLOAT, INT, JOINED, STRING, Prediction
from bloodcell.predict.writers import Writer
from bloodcell.records import FolderGroup, OutputMeta


class ParquetDatasetWriter(Writer):
    """Rows into a Parquet dataset folder, one complete part file at a time.

    A Parquet file is unreadable until its footer is written, so a killed writer would lose
    everything in one big file. Here each part is written as `part-NNNNN.parquet.tmp` and
    renamed when closed: after a kill, the folder holds complete parts plus one `.tmp` that
    `--resume` deletes and redoes. Memory: at most one row group of rows is buffered.
    """

    def __init__(
        self,
        folder: Path,
        backend: Backend,
        meta: OutputMeta,
        first_part: int = 0,
        part_rows: int = 4096,
        group_rows: int = 256,
    ) -> None:
        import pyarrow as pa

        super().__init__(backend, meta)
        self.folder = folder
        self.part = first_part
        self.part_rows = max(1, part_rows)
        self.group_rows = max(1, min(group_rows, self.part_rows))
        self.buffer: list[Prediction] = []
        self.writer: Any = None
        self.rows_in_part = 0
        arrow = {
            STRING: pa.string(),
            FLOAT: pa.float64(),
            BOOL: pa.bool_(),
            INT: pa.int64(),
            JOINED: pa.string(),
        }
        self.columns = prediction_columns(self.labels)
        columns = [(c.name, arrow[c.kind]) for c in self.columns]
        self.schema = pa.schema(columns, metadata={"bloodcell": json.dumps(meta)})
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, preds: list[Prediction]) -> None:
        self.buffer.extend(preds)
        while len(self.buffer) >= min(self.group_rows, self.part_rows - self.rows_in_part):
            self._flush(min(self.group_rows, self.part_rows - self.rows_in_part))

    def finish(self, groups: list[FolderGroup] | None, totals: Totals) -> None:
        while self.buffer:
            self._flush(min(len(self.buffer), self.part_rows - self.rows_in_part))
        self._close_part()

    def _flush(self, n: int) -> None:
        """Write the first `n` buffered rows as one row group; close the part when full."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self.buffer = self.buffer[:n], self.buffer[n:]
        if self.writer is None:
            self.writer = pq.ParquetWriter(self._path(".tmp"), self.schema)
        self.writer.write_table(pa.Table.from_pylist([self._row(p) for p in rows], self.schema))
        self.rows_in_part += len(rows)
        if self.rows_in_part >= self.part_rows:
            self._close_part()

    def _close_part(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        os.replace(self._path(".tmp"), self._path(""))  # atomic: a part is whole or absent
        self.writer, self.rows_in_part, self.part = None, 0, self.part + 1

    def _path(self, suffix: str) -> Path:
        return self.folder / f"part-{self.part:05d}.parquet{suffix}"

    def _row(self, p: Prediction) -> dict[str, object]:
        return {c.name: _cell(c, p) for c in self.columns}


def _cell(c: Column, p: Prediction) -> object:
    """A column's value; a list is joined by '|' (an empty one is null)."""
    v = c.value(p)
    return ("|".join(v) if v else None) if c.kind == JOINED else v
