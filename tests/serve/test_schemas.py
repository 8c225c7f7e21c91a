"""schemas: the API's result model is derived from the `Prediction` record's fields."""

from __future__ import annotations

from dataclasses import fields

from bloodcell.predict.records import Prediction as Record
from bloodcell.serve.schemas import Prediction


def test_every_api_field_of_the_record_is_in_the_result_schema() -> None:
    """A record field reaches the API under its API name with its description; only the
    fields declared not to (`api=None`) are left out."""
    props = Prediction.model_json_schema()["properties"]
    left_out = set()
    for f in fields(Record):
        name = f.metadata["api"]
        if name is None:
            left_out.add(f.name)
            continue
        prop = props[name or f.name]
        assert prop.get("description") == f.metadata["doc"]
    assert left_out == {"engine", "error"}
    server_only = {"filename", "timing_ms", "heatmap_png", "heatmap_class"}
    assert set(props) - {f.name for f in fields(Record)} == server_only
    # The record keeps its error out of the API; a batch answers each file, so it is in.
    assert "could not be classified" in props["error"]["description"]
