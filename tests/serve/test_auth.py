"""The optional API key, against `bloodcell serve` with BLOODCELL_API_KEY set: `/v1/*` needs
`Authorization: Bearer KEY` and answers 401 otherwise; `/health` and the page stay open."""

from __future__ import annotations

import httpx
import pytest
from tests.serve.conftest import API_KEY, LiveServer, image_part, png_bytes

from bloodcell.serve.auth import ApiKeyMiddleware

GOOD = {"Authorization": f"Bearer {API_KEY}"}


def assert_401(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, detail


def test_key_accepted(secured_server: LiveServer) -> None:
    url = secured_server.url
    assert httpx.get(f"{url}/v1/model", headers=GOOD).status_code == 200
    r = httpx.post(f"{url}/v1/predict", headers=GOOD, files=[image_part("a.png")], timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["filename"] == "a.png"
    # The scheme name is case-insensitive (RFC 7235).
    lower = {"Authorization": f"bearer {API_KEY}"}
    assert httpx.get(f"{url}/v1/model", headers=lower).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": API_KEY}],
    ids=["none", "empty", "no-token", "no-scheme"],
)
def test_key_absent(secured_server: LiveServer, headers: dict) -> None:
    url = secured_server.url
    assert_401(httpx.get(f"{url}/v1/model", headers=headers), "API key", "Bearer")
    r = httpx.post(f"{url}/v1/predict", headers=headers, files=[image_part()], timeout=60)
    assert_401(r, "API key")
    assert_401(httpx.post(f"{url}/v1/summary", headers=headers, json={"results": []}))


@pytest.mark.parametrize(
    "token", [API_KEY + "x", API_KEY[:-1], API_KEY.upper(), "Basic " + API_KEY], ids=str
)
def test_key_refused(secured_server: LiveServer, token: str) -> None:
    r = httpx.get(f"{secured_server.url}/v1/model", headers={"Authorization": f"Bearer {token}"})
    assert_401(r, "not valid")


def test_refused_before_the_body_is_read(secured_server: LiveServer) -> None:
    """Without the key an upload is refused before it is parsed: malformed, it is 401, not 400."""
    url = secured_server.url
    junk = httpx.post(
        f"{url}/v1/predict",
        content=b"\xff" * 1000,
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert_401(junk)
    not_an_image = httpx.post(f"{url}/v1/predict", files=[image_part("x.png", b"\0" * 2000)])
    assert_401(not_an_image)


def test_health_page_and_docs_stay_open(secured_server: LiveServer) -> None:
    url = secured_server.url
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert "Research use only" in httpx.get(f"{url}/").text
    assert httpx.get(f"{url}/static/main.js").status_code == 200
    assert httpx.get(f"{url}/openapi.json").status_code == 200


def test_openapi_documents_the_bearer_scheme(secured_server: LiveServer) -> None:
    spec = httpx.get(f"{secured_server.url}/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, method in (("/v1/model", "get"), ("/v1/predict", "post"), ("/v1/summary", "post")):
        op = spec["paths"][path][method]
        assert op["security"] == [{"apiKey": []}], path
        assert "401" in op["responses"], path
    assert "security" not in spec["paths"]["/health"]["get"]


def test_open_server_documents_no_scheme(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert "security" not in spec["paths"]["/v1/predict"]["post"]
    r = httpx.post(
        f"{live_server.url}/v1/predict", files=[image_part(data=png_bytes())], timeout=60
    )
    assert r.status_code == 200


def test_empty_key_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="empty"):
        ApiKeyMiddleware(lambda *a: None, "")  # type: ignore[arg-type]
