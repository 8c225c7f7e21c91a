"""records: the Prediction object and its JSON form."""

from __future__ import annotations

from tests.predict import PRED_KEYS

from bloodcell.predict.records import Prediction


def test_prediction_to_dict_roundtrip() -> None:
    p = Prediction(path="x.jpg", error="empty file (0 bytes)")
    expect = dict.fromkeys(PRED_KEYS) | {"path": "x.jpg", "error": "empty file (0 bytes)"}
    assert p.to_dict() == expect
