"""The API on a model that knows its limits: out-of-scope images and prediction sets."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.serve.conftest import image_part, noise_png, png_bytes

from bloodcell.labels import LABELS


def test_out_of_scope_image_gets_no_class(scoped_client: TestClient) -> None:
    r = scoped_client.post("/v1/predict", files=[image_part("noise.png", noise_png())])
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["out_of_scope"] is True
    assert result["label"] is None and result["display_name"] is None
    assert result["confidence"] is None and result["prediction_set"] is None
    assert result["ood_score"] > scoped_client.get("/v1/model").json()["ood_threshold"]
    assert list(result["probabilities"]) == list(LABELS)  # kept for the record
    assert "outside what this model was trained on" in result["note"]


def test_smear_gets_a_class_and_its_set(scoped_client: TestClient) -> None:
    r = scoped_client.post("/v1/predict", files=[image_part("smear.png", png_bytes("pre_b", 3))])
    (result,) = r.json()["results"]
    assert result["out_of_scope"] is False and result["label"] in LABELS
    assert result["label"] in result["prediction_set"]
    assert (result["note"] is None) == (len(result["prediction_set"]) == 1)


def test_explain_skips_out_of_scope_images(scoped_client: TestClient) -> None:
    files = [image_part("noise.png", noise_png(1)), image_part("smear.png", png_bytes("benign"))]
    results = scoped_client.post("/v1/predict", params={"explain": "true"}, files=files).json()
    noise, smear = results["results"]
    assert noise["out_of_scope"] and noise["heatmap_png"] is None
    assert not smear["out_of_scope"] and smear["heatmap_png"]


def test_model_info_and_schema_document_the_new_fields(scoped_client: TestClient) -> None:
    info = scoped_client.get("/v1/model").json()
    assert info["ood_threshold"] > 0 and info["conformal_coverage"] == 0.95
    schema = scoped_client.get("/openapi.json").json()["components"]["schemas"]
    props = schema["Prediction"]["properties"]
    for field in ("out_of_scope", "ood_score", "prediction_set", "note"):
        assert props[field].get("description"), field
    assert "null" in str(props["label"])  # no class for an out-of-scope image
