"""records: the Prediction object and its JSON form."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

from tests.predict import PRED_KEYS

from bloodcell.predict.columns import csv_header
from bloodcell.predict.records import PER_LABEL, Prediction
from bloodcell.predict.writers_parquet import ParquetDatasetWriter


def test_prediction_to_dict_roundtrip() -> None:
    p = Prediction(path="x.jpg", error="empty file (0 bytes)")
    expect = dict.fromkeys(PRED_KEYS) | {"path": "x.jpg", "error": "empty file (0 bytes)"}
    assert p.to_dict() == expect


def test_every_column_field_reaches_csv_and_parquet(tmp_path: Path) -> None:
    """The CSV header and the Parquet schema come from the dataclass fields: a field declared
    as a column (per-label: one per label) shows up in both, in field order."""
    labels = ["benign", "pro_b"]
    backend = SimpleNamespace(labels=labels)
    schema = ParquetDatasetWriter(tmp_path / "pq", backend, {}).schema  # type: ignore[arg-type]
    header = csv_header(labels)
    assert schema.names == header
    expected = []
    for f in fields(Prediction):
        kind = f.metadata["column"]
        if kind == PER_LABEL:
            expected += [f"{f.metadata['prefix']}_{lb}" for lb in labels]
        elif kind is not None:
            expected.append(f.name)
    assert header == expected
    not_columns = {f.name for f in fields(Prediction) if f.metadata["column"] is None}
    assert not_columns == {"note", "cell_boxes"}
    assert {"probabilities", "note"} < set(Prediction(path="x").to_dict())
