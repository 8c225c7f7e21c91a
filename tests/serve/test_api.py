"""The REST API through FastAPI's TestClient: every endpoint and every kind of bad input.

Bad input must give a 4xx with a plain `detail` sentence, and the server must keep serving.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tests.predict import GROUP_KEYS
from tests.serve.conftest import (
    ALLOWED_ORIGIN,
    API_KEY,
    METRICS,
    LiveServer,
    image_part,
    png_bytes,
)

from bloodcell.labels import DISPLAY_NAMES, LABELS


def assert_plain_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail, detail


def assert_still_serving(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.post("/v1/predict", files=[image_part()]).status_code == 200


# --- endpoints --------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    queue = body.pop("queue")
    # `backend` is `engine` under its first name, deprecated and kept for older clients.
    assert body == {"status": "ok", "model_loaded": True, "engine": "torch", "backend": "torch"}
    assert queue["max_batch_size"] == 32 and queue["max_wait_ms"] == 5.0
    assert queue["queued"] == 0
    # The counters follow the images the batch worker classifies.
    client.post("/v1/predict", files=[image_part("a.png"), image_part("b.png")])
    after = client.get("/health").json()["queue"]
    assert after["images"] == queue["images"] + 2
    assert queue["batches"] + 1 <= after["batches"] <= queue["batches"] + 2
    assert after["largest_batch"] >= 1 and after["queued"] == 0


def test_model_info(client: TestClient, model_dir: Path) -> None:
    info = client.get("/v1/model").json()
    assert [c["label"] for c in info["classes"]] == list(LABELS)
    assert {c["label"]: c["display_name"] for c in info["classes"]} == DISPLAY_NAMES
    assert info["architecture"] == "mobilenet_v2"
    assert info["name"] == model_dir.parent.name  # a run is named by its directory
    assert len(info["version"]) == 12 and int(info["version"], 16) >= 0
    assert info["bloodcell_version"] and info["format"].startswith("bloodcell-model")
    assert info["image_size"] == 64 and info["explain_available"] is True
    # NaN is not JSON: it becomes null.
    assert info["metrics"] == {"test": {**METRICS["test"], "roc_auc": None}}
    assert info["limits"] == {
        "max_upload_bytes": 10_000_000,
        "max_pixels": 40_000_000,
        "max_files": 16,
    }


def test_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/v1/model", "/v1/predict"} <= set(spec["paths"])
    predict = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "207", "400", "413", "422"} <= set(predict["responses"])
    # The status codes of a batch are documented where an integrator reads them.
    for words in ("**200**", "**207**", "`error`", "413"):
        assert words in predict["description"], words
    assert {p["name"] for p in predict["parameters"]} == {"explain", "explain_class", "cell_guard"}
    result = spec["components"]["schemas"]["Prediction"]["properties"]
    assert "could not be classified" in result["error"]["description"]
    assert "not a time per image" in result["timing_ms"]["description"]


def test_model_info_gives_the_csv_columns_of_predict(client: TestClient) -> None:
    """The page writes its CSV from these: the command line's columns, in API keys."""
    from bloodcell.predict.columns import csv_header, group_csv_header

    spec = client.get("/v1/model").json()["csv"]
    assert [c["name"] for c in spec["columns"]] == csv_header(LABELS)
    by_name = {c["name"]: c for c in spec["columns"]}
    assert by_name["path"]["key"] == "filename" and by_name["path"]["kind"] == "string"
    assert by_name["prob_pre_b"] == {
        "name": "prob_pre_b",
        "key": "probabilities",
        "kind": "float",
        "label": "pre_b",
    }
    assert by_name["uncertain"]["kind"] == "bool" and by_name["prediction_set"]["kind"] == "joined"
    result = client.post("/v1/predict", files=[image_part()]).json()["results"][0]
    for column in spec["columns"]:  # every key is in a result, but the response's `engine`
        assert column["key"] in result or column["key"] == "engine", column
    groups = spec["group_columns"]
    assert [c["name"] for c in groups] == group_csv_header(LABELS)
    assert {c["key"] for c in groups} == GROUP_KEYS


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Research use only" in page.text and "not a diagnosis" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="static/main.js">' in page.text
    assert client.get("/static/style.css").status_code == 200
    # Every module the page imports is served as JavaScript (a module needs the type).
    modules, seen = ["main.js"], set()
    while modules:
        name = modules.pop()
        seen.add(name)
        r = client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert "javascript" in r.headers["content-type"], name
        modules += [m for m in re.findall(r'from "\./([\w-]+\.js)"', r.text) if m not in seen]
    assert {"api.js", "card.js", "results.js", "summary.js", "heatmap.js"} <= seen


def test_no_static_file_is_over_400_lines() -> None:
    from bloodcell.serve.routes import STATIC_DIR

    for path in STATIC_DIR.iterdir():
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path.name


def test_predict_one(client: TestClient) -> None:
    r = client.post("/v1/predict", files=[image_part("smear 1.png")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == client.get("/v1/model").json()["version"]
    (result,) = body["results"]
    assert result["filename"] == "smear 1.png"
    assert result["label"] in LABELS
    assert result["display_name"] == DISPLAY_NAMES[result["label"]]
    probs = result["probabilities"]
    assert list(probs) == list(LABELS) and sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert result["confidence"] == max(probs.values())
    assert result["uncertain"] is (result["confidence"] < 0.8)
    assert result["timing_ms"] > 0 and result["heatmap_png"] is None
    assert result["error"] is None and result["heatmap_class"] is None
    assert body["detail"] is None


def test_a_smear_without_white_cells_is_refused_with_its_reason(client: TestClient) -> None:
    """Red cells and background only: out of scope, 'no white cell found', no class; a field
    with a white cell beside it is answered, with its cells; cell_guard=false answers both."""
    from tests.conftest import PURPLE_NUCLEUS, smear_field

    def part(name: str, image: Image.Image) -> tuple:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return ("files", (name, buf.getvalue(), "image/png"))

    empty = smear_field(11, size=128, red_cells=10)
    cell = smear_field(12, size=128, cells=((64, 64, 14, PURPLE_NUCLEUS),))
    files = [part("empty.png", empty), part("cell.png", cell)]
    refused, answered = client.post("/v1/predict", files=files).json()["results"]
    assert refused["out_of_scope"] is True and refused["reason"] == "no white cell found"
    assert refused["label"] is None and refused["cells"] == 0
    assert answered["cells"] >= 1 and answered["reason"] != "no white cell found"
    top, left, bottom, right = answered["cell_boxes"][0]
    assert top <= 64 < bottom and left <= 64 < right
    off = client.post("/v1/predict", params={"cell_guard": "false"}, files=files).json()
    assert all(r["reason"] != "no white cell found" for r in off["results"])
    assert all(r["cells"] is None for r in off["results"])


def test_predict_many_keeps_order(client: TestClient) -> None:
    files = [
        image_part(f"{label}.jpg", png_bytes(label, i, fmt="JPEG"))
        for i, label in enumerate(LABELS)
    ]
    results = client.post("/v1/predict", files=files).json()["results"]
    assert [r["filename"] for r in results] == [f"{label}.jpg" for label in LABELS]


def test_predict_explain_returns_heatmap_of_input_size(client: TestClient) -> None:
    data = png_bytes(size=96)
    r = client.post("/v1/predict", params={"explain": "true"}, files=[image_part(data=data)])
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    heatmap = Image.open(io.BytesIO(base64.b64decode(result["heatmap_png"])))
    assert heatmap.format == "PNG" and heatmap.size == (96, 96)
    assert result["heatmap_class"] == result["label"]  # the predicted class by default


def test_explain_class_picks_the_class_the_heatmap_explains(
    client: TestClient, model_dir: Path
) -> None:
    from bloodcell.data.decode import decode_image
    from bloodcell.evaluation.gradcam import explain_image, torch_backend

    data = png_bytes("pro_b", 4, size=80)
    first = client.post("/v1/predict", files=[image_part(data=data)]).json()["results"][0]
    other = next(lb for lb in LABELS if lb != first["label"])
    r = client.post("/v1/predict", params={"explain_class": other}, files=[image_part(data=data)])
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["heatmap_class"] == other  # explain_class alone implies explain=true
    assert result["label"] == first["label"]  # the answer itself does not change
    want = explain_image(torch_backend(model_dir), decode_image(data), target=other)
    assert base64.b64decode(result["heatmap_png"]) == want.overlay_png()


def test_unknown_explain_class_is_400(client: TestClient) -> None:
    r = client.post("/v1/predict", params={"explain_class": "blast"}, files=[image_part()])
    assert_plain_error(r, 400, "unknown class", "'blast'", "early_pre_b")
    assert "results" not in r.json() or r.json()["results"] is None


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("notes.txt", b"this is not an image", ("notes.txt", "not an image")),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, ("fake.png",)),
        ("truncated.png", png_bytes()[:300], ("truncated.png", "corrupt")),
        ("truncated.jpg", png_bytes(fmt="JPEG")[:400], ("truncated.jpg", "corrupt")),
        ("empty.png", b"", ("empty.png", "empty")),
    ],
)
def test_bad_files_are_400(client: TestClient, name: str, data: bytes, words: tuple) -> None:
    r = client.post("/v1/predict", files=[image_part(name, data)])
    assert_plain_error(r, 400, *words)  # as before per-file results: clients keep working
    (result,) = r.json()["results"]
    assert result["filename"] == name and result["error"] in r.json()["detail"]
    assert result["label"] is None and result["probabilities"] is None


def test_a_bad_file_is_reported_and_the_others_classified(client: TestClient) -> None:
    """Four good smears and a text file named .jpg: 207, five results, one error."""
    files = [image_part(f"good-{i}.png", png_bytes(LABELS[i], i)) for i in range(4)]
    files.insert(2, image_part("notes.jpg", b"this is a text file, not an image"))
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 207, r.text
    body = r.json()
    names = ["good-0.png", "good-1.png", "notes.jpg", "good-2.png", "good-3.png"]
    assert [x["filename"] for x in body["results"]] == names
    bad = body["results"][2]
    assert bad["error"].startswith("not an image") and bad["label"] is None
    assert bad["probabilities"] is None and bad["confidence"] is None
    good = [x for x in body["results"] if x["filename"] != "notes.jpg"]
    assert all(x["error"] is None and x["label"] in LABELS for x in good)
    assert all(list(x["probabilities"]) == list(LABELS) for x in good)
    assert body["detail"].startswith("1 of 5 files could not be classified: notes.jpg: not an")
    # Each good answer is the one the file gets alone: the bad file shifts nothing.
    alone = client.post("/v1/predict", files=[files[4]]).json()["results"][0]
    for label, prob in alone["probabilities"].items():
        assert body["results"][4]["probabilities"][label] == pytest.approx(prob, abs=1e-5)


def test_explain_skips_the_bad_file(client: TestClient) -> None:
    files = [image_part("bad.png", b"garbage"), image_part("good.png")]
    r = client.post("/v1/predict", params={"explain": "true"}, files=files)
    assert r.status_code == 207
    bad, good = r.json()["results"]
    assert bad["heatmap_png"] is None and bad["heatmap_class"] is None and bad["error"]
    assert good["heatmap_png"] and good["heatmap_class"] == good["label"]


def test_every_file_bad_is_400_with_each_error(client: TestClient) -> None:
    files = [image_part("a.png", b"garbage"), image_part("b.png", b"")]
    r = client.post("/v1/predict", files=files)
    assert_plain_error(r, 400, "no file could be classified", "a.png", "b.png")
    a, b = r.json()["results"]
    assert a["filename"] == "a.png" and "not an image" in a["error"]
    assert b["filename"] == "b.png" and "empty" in b["error"]


def test_decompression_bomb_is_refused_before_decoding(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, format="PNG")  # 144 MP in ~20 kB
    assert len(buf.getvalue()) < 100_000
    r = client.post("/v1/predict", files=[image_part("bomb.png", buf.getvalue())])
    assert_plain_error(r, 413, "bomb.png", "pixels")
    # Beside a good file, the bomb is that file's error and the good one is answered.
    r = client.post("/v1/predict", files=[image_part("bomb.png", buf.getvalue()), image_part()])
    assert r.status_code == 207
    bomb, good = r.json()["results"]
    assert "pixels" in bomb["error"] and good["label"] in LABELS


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"files": [("file", ("a.png", png_bytes(), "image/png"))]}, ("'files'",)),
        ({"data": {"files": "not a file"}}, ("'files'",)),
        ({}, ("'files'",)),
        ({"content": b"{}", "headers": {"content-type": "application/json"}}, ("'files'",)),
    ],
    ids=["wrong-field-name", "text-not-file", "no-body", "json-body"],
)
def test_missing_or_wrong_fields_are_422(client: TestClient, kwargs: dict, words: tuple) -> None:
    assert_plain_error(client.post("/v1/predict", **kwargs), 422, *words)


def test_bad_query_value_is_422(client: TestClient) -> None:
    r = client.post("/v1/predict", params={"explain": "perhaps"}, files=[image_part()])
    assert_plain_error(r, 422, "explain")


def test_too_many_files(client: TestClient) -> None:
    r = client.post("/v1/predict", files=[image_part(f"{i}.png") for i in range(17)])
    assert_plain_error(r, 400, "too many files", "16")


def test_server_keeps_serving_after_bad_input(client: TestClient) -> None:
    client.post("/v1/predict", files=[image_part("x.png", b"junk")])
    client.post(
        "/v1/predict",
        content=b"\xff" * 1000,
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert_still_serving(client)


# --- configurable limits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(model_dir: Path) -> Iterator[TestClient]:
    from bloodcell.serve.app import create_app

    app = create_app(
        model_dir, max_upload_bytes=50_000, max_pixels=80 * 80, max_files=2, batch_size=1
    )
    with TestClient(app) as c:
        yield c


def test_upload_over_size_limit(strict: TestClient) -> None:
    r = strict.post("/v1/predict", files=[image_part("big.png", b"\0" * 60_000)])
    assert_plain_error(r, 413, "too large", "0.05 MB")


def test_size_limit_is_enforced_while_reading(strict: TestClient) -> None:
    """A chunked body has no Content-Length to trust: the bytes themselves are counted."""
    chunks_sent = []

    def body() -> Iterator[bytes]:
        for i in range(100):
            chunks_sent.append(i)
            yield b"x" * 10_000

    r = strict.post(
        "/v1/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=abc"}
    )
    assert_plain_error(r, 413, "too large")
    assert "content-length" not in r.request.headers


def test_lying_content_length_is_not_trusted(strict: TestClient) -> None:
    files = {"files": ("big.png", b"\0" * 60_000, "image/png")}
    request = strict.build_request("POST", "/v1/predict", files=files)
    request.headers["content-length"] = "100"
    r = strict.send(request)
    assert r.status_code in (400, 413), r.text  # never parsed as a small, valid upload
    assert r.status_code != 200


def test_image_over_pixel_limit(strict: TestClient) -> None:
    r = strict.post("/v1/predict", files=[image_part("wide.png", png_bytes(size=100))])
    assert_plain_error(r, 413, "wide.png", "100x100", "6,400")
    at_limit = strict.post("/v1/predict", files=[image_part(data=png_bytes(size=80))])
    assert at_limit.status_code == 200


def test_configured_file_count(strict: TestClient) -> None:
    r = strict.post("/v1/predict", files=[image_part(f"{i}.png") for i in range(3)])
    assert_plain_error(r, 400, "at most 2")
    assert_still_serving(strict)


def test_configured_batch_size(strict: TestClient) -> None:
    before = strict.get("/health").json()["queue"]
    assert before["max_batch_size"] == 1
    r = strict.post("/v1/predict", files=[image_part("a.png"), image_part("b.png")])
    assert [x["filename"] for x in r.json()["results"]] == ["a.png", "b.png"]
    after = strict.get("/health").json()["queue"]
    assert after["batches"] == before["batches"] + 2 and after["largest_batch"] == 1


# --- ONNX Runtime -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the model directory with `model.onnx` exported beside the weights."""
    import shutil

    from bloodcell.export.onnx import export_onnx

    copy = tmp_path_factory.mktemp("onnx") / "run" / "model"
    shutil.copytree(model_dir, copy)
    export_onnx(copy)
    assert (copy / "model.onnx").is_file()
    return copy


def test_onnx_engine_on_request(onnx_model: Path, client: TestClient) -> None:
    from bloodcell.serve.app import create_app

    with TestClient(create_app(onnx_model.parent, engine="onnx")) as c:  # the run directory
        assert c.get("/health").json()["engine"] == "onnx"
        info = c.get("/v1/model").json()
        assert info["engine"] == info["backend"] == "onnx" and info["name"] == "run"
        files = [image_part(data=png_bytes("pre_b", 3))]
        onnx = c.post("/v1/predict", params={"explain": "true"}, files=files).json()
        torch = client.post("/v1/predict", files=files).json()
    assert onnx["engine"] == "onnx" and torch["engine"] == "torch"
    got, want = onnx["results"][0], torch["results"][0]
    assert got["label"] == want["label"]
    for label in LABELS:
        assert got["probabilities"][label] == pytest.approx(want["probabilities"][label], abs=1e-4)
    assert got["heatmap_png"]  # Grad-CAM still comes from the torch model


def test_auto_uses_only_checked_engines(onnx_model: Path, tmp_path: Path) -> None:
    """A hand-exported, unchecked model.onnx is not chosen by auto; a checked int8 one is."""
    from tests.models import make_run

    from bloodcell.export.check import export_engines
    from bloodcell.serve.app import create_app

    with TestClient(create_app(onnx_model.parent)) as c:
        assert c.get("/health").json()["engine"] == "torch"
    run = make_run(tmp_path)
    records = export_engines(run)
    expected = next((e for e in ("onnx-int8", "onnx") if records[e]["verified"]), "torch")
    smear = sorted((tmp_path / "data").rglob("*.jpg"))[0].read_bytes()  # a training image
    with TestClient(create_app(run)) as c:
        assert c.get("/v1/model").json()["engine"] == expected
        r = c.post("/v1/predict", params={"explain": "true"}, files=[image_part(data=smear)])
    body = r.json()
    assert body["engine"] == expected
    assert not body["results"][0]["out_of_scope"] and body["results"][0]["heatmap_png"]


def test_lone_onnx_file_predicts_but_cannot_explain(onnx_model: Path) -> None:
    from bloodcell.serve.app import create_app

    with TestClient(create_app(onnx_model / "model.onnx")) as c:
        assert c.get("/v1/model").json()["explain_available"] is False
        assert c.post("/v1/predict", files=[image_part()]).status_code == 200
        r = c.post("/v1/predict", params={"explain": "true"}, files=[image_part()])
        assert_plain_error(r, 400, "torch model")


# --- CORS (real servers: the default one, and one naming an origin) ---------------------------


def _preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    return httpx.options(f"{url}/v1/predict", headers=headers)


def test_cors_is_off_by_default(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/v1/model", headers={"Origin": ALLOWED_ORIGIN})
    assert r.status_code == 200
    assert not any(h.startswith("access-control-") for h in r.headers)
    preflight = _preflight(live_server.url, ALLOWED_ORIGIN)
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_the_named_origin_only(secured_server: LiveServer) -> None:
    url, key = secured_server.url, {"Authorization": f"Bearer {API_KEY}"}
    r = httpx.get(f"{url}/v1/model", headers={"Origin": ALLOWED_ORIGIN, **key})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # A 401 carries the header too, so a page on that origin can read why it was refused.
    refused = httpx.get(f"{url}/v1/model", headers={"Origin": ALLOWED_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    preflight = _preflight(url, ALLOWED_ORIGIN)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = "http://elsewhere.example"
    r = httpx.get(f"{url}/v1/model", headers={"Origin": other, **key})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in _preflight(url, other).headers


# --- the model card as HTML, and the command line's tables of kept results --------------------


def test_model_card_as_html_for_the_page(client: TestClient, model_dir: Path) -> None:
    from bloodcell.reporting.model_card import write_model_card

    card = write_model_card(model_dir)
    card.write_text(card.read_text() + "\nA line with <script>alert(1)</script>.\n")
    try:
        markdown = client.get("/v1/model/card")  # API clients keep the file as saved
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert markdown.text == card.read_text()
        r = client.get("/v1/model/card", params={"format": "html"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        assert re.search(r"<h3>[^<]+: B-ALL blood smear classifier</h3>", html)
        assert "<h4>Intended use</h4>" in html and "<table>" in html and "<strong>" in html
        assert "license:" not in html and "model-index" not in html  # no front matter
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert_plain_error(client.get("/v1/model/card", params={"format": "pdf"}), 422)
    finally:
        card.unlink()
    assert client.get("/v1/model/card", params={"format": "html"}).status_code == 404


def _kept(result: dict, engine: str, case: str) -> dict:
    """A result as the page keeps and sends it back: its path under the case name."""
    return {**result, "filename": f"{case}/{result['filename']}", "engine": engine}


def test_summary_is_what_predict_writes_for_the_same_answers(client: TestClient) -> None:
    from tests.serve.test_browser import _record

    from bloodcell.predict.columns import csv_header, csv_row, group_csv_header, group_csv_row
    from bloodcell.predict.grouping import Totals, group_by_folder

    parts = [image_part(f"s{i}.png", png_bytes(LABELS[i], 40 + i)) for i in range(3)]
    parts.insert(1, image_part("notes.png", b"not an image"))
    body = client.post("/v1/predict", files=parts, params={"explain": True}).json()
    kept = [
        _kept(r, body["engine"], "Slide 7" if i < 2 else "Slide 8")
        for i, r in enumerate(body["results"])
    ]
    kept.append({"filename": "loose.png", "error": "too large for this server"})
    r = client.post("/v1/summary", json={"results": kept})
    assert r.status_code == 200, r.text
    summary = r.json()

    records = [_record(k, body["engine"], k["filename"]) for k in kept]
    rows = list(csv.reader(io.StringIO(summary["csv"])))
    assert rows == [csv_header(LABELS)] + [csv_row(p, LABELS) for p in records]
    assert [row[0] for row in rows[1:]] == [
        "Slide 7/s0.png",
        "Slide 7/notes.png",
        "Slide 8/s1.png",
        "Slide 8/s2.png",
        "loose.png",
    ]
    groups = group_by_folder(records, LABELS)
    assert summary["groups"] == groups
    assert [g["folder"] for g in groups] == [".", "Slide 7", "Slide 8"]
    grouped = list(csv.reader(io.StringIO(summary["groups_csv"])))
    assert grouped[0] == group_csv_header(LABELS)
    assert grouped[1:] == [[str(v) for v in group_csv_row(g, LABELS)] for g in groups]
    totals = Totals(LABELS)
    totals.add(records)
    assert summary["totals"] == totals.to_dict()
    assert summary["totals"]["n_files"] == 5 and summary["totals"]["n_errors"] == 2

    empty = client.post("/v1/summary", json={"results": []}).json()
    assert empty["groups"] == [] and empty["totals"]["n_files"] == 0
    assert empty["csv"].splitlines() == [",".join(csv_header(LABELS))]


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ({"filename": "a.png", "label": "pro_b"}, ("a.png", "probability", "benign")),
        (
            {
                "filename": "b.png",
                "label": "blast",
                "probabilities": dict.fromkeys(LABELS, 0.25),
            },
            ("b.png", "unknown class", "blast"),
        ),
    ],
    ids=["no-probabilities", "unknown-class"],
)
def test_summary_refuses_results_it_cannot_tabulate(
    client: TestClient, result: dict, words: tuple
) -> None:
    assert_plain_error(client.post("/v1/summary", json={"results": [result]}), 400, *words)
    assert_plain_error(client.post("/v1/summary", json={"results": [{"label": "x"}]}), 422)
    assert_still_serving(client)


def test_a_cell_type_the_model_was_taught_to_refuse_comes_back_with_its_reason(
    tmp_path: Path,
) -> None:
    """A tiny model trained with a synthetic "other cell type" as outliers: the API gives such
    an image no class, says why and which note, and still answers the four classes' images."""
    from tests.train import tiny_config, tiny_data
    from tests.train.test_outliers import other_cells

    from bloodcell.models.refusal import OTHER_CELL_REASON
    from bloodcell.serve.app import create_app
    from bloodcell.train.job import train
    from bloodcell.train.outliers import held_out

    data, manifest = tiny_data(tmp_path, n_per_class=12)
    outliers = other_cells(tmp_path / "outliers", 40)
    config = tiny_config(
        outliers=(str(outliers),), outlier_weight=1.0, epochs=8, ood_acceptance=None
    )
    run = train(config, data, manifest, tmp_path / "run", progress=False)
    unseen = [p for p in sorted(outliers.glob("*.png")) if held_out(p, config.outlier_share)]
    known = sorted(data.rglob("*.jpg"))[:4]
    files = [image_part(p.name, p.read_bytes()) for p in unseen[:4] + known]
    with TestClient(create_app(run)) as c:
        body = c.post("/v1/predict", params={"cell_guard": "false"}, files=files).json()
    results = body["results"]
    other = [r for r in results[:4] if r["reason"] == OTHER_CELL_REASON]
    assert len(other) >= 3
    for r in other:
        assert r["label"] is None and r["out_of_scope"] is True
        assert "none of the four" in r["note"]
    assert sum(r["reason"] == OTHER_CELL_REASON for r in results[4:]) <= 1
