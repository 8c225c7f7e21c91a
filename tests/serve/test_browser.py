"""The page in a real browser: Debian's chromium, driven by Playwright, against `bloodcell serve`.

Set BLOODCELL_SCREENSHOT=path.png to keep a screenshot of the page after a prediction.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serve.conftest import API_KEY, LiveServer, png_bytes

from bloodcell.labels import DISPLAY_NAMES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser):
    """A page in a fresh context: its own session storage."""
    page = browser.new_context(viewport={"width": 1000, "height": 1100}).new_page()
    page.set_default_timeout(30_000)
    return page


def wait_for_model_info(page) -> None:
    # expect() polls without eval, which the page's Content-Security-Policy forbids.
    from playwright.sync_api import expect

    expect(page.locator("#model-info")).to_contain_text("mobilenet_v2", timeout=30_000)


@pytest.fixture(scope="module")
def page(browser, live_server: LiveServer) -> Iterator:
    page = new_page(browser)
    try:
        page.goto(live_server.url + "/")
        wait_for_model_info(page)
        yield page
    finally:
        page.context.close()


def _check_result(page, name: str) -> None:
    card = page.locator(".result").first
    card.locator(".heatmap-figure").wait_for(state="visible")
    assert card.locator(".filename").inner_text() == name
    assert card.locator(".label").inner_text() in DISPLAY_NAMES.values()
    assert "% confidence" in card.locator(".confidence").inner_text()
    assert card.locator(".chart .value").count() == len(DISPLAY_NAMES)
    # A random model is unsure of everything, and the page must say so.
    assert card.locator(".uncertain-flag").is_visible()
    for img in (".preview", ".heatmap"):
        width = card.locator(img).evaluate("el => el.complete ? el.naturalWidth : 0")
        assert width == 64, img
    assert card.locator(".heatmap").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#error").is_hidden()


def test_upload_with_file_picker_shows_prediction_and_heatmap(page, tmp_path: Path) -> None:
    image = tmp_path / "smear.png"
    image.write_bytes(png_bytes("pro_b", 7))
    assert "not a diagnosis" in page.locator("#notice").inner_text()
    assert "test accuracy 50.0% (n=40)" in page.locator("#model-info").inner_text()
    page.set_input_files("#file-input", str(image))
    _check_result(page, "smear.png")
    if shot := os.environ.get("BLOODCELL_SCREENSHOT"):
        page.screenshot(path=shot, full_page=True)


def test_drag_and_drop(page) -> None:
    data = base64.b64encode(png_bytes("benign", 3)).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return dt;
        }""",
        data,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    page.wait_for_function(
        "document.querySelector('.result .filename')?.textContent === 'dropped.png'"
    )
    _check_result(page, "dropped.png")


def test_bad_file_shows_a_plain_error(page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is a text file, not an image")
    page.set_input_files("#file-input", str(bad))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "notes.png" in error.inner_text() and "not an image" in error.inner_text()
    assert page.locator(".result").count() == 0


# --- a server with an API key -----------------------------------------------------------------


def test_page_asks_for_the_api_key_once(
    browser, secured_server: LiveServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    image = tmp_path / "smear.png"
    image.write_bytes(png_bytes("pre_b", 5))
    page = new_page(browser)
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
    )
    try:
        page.goto(secured_server.url + "/")
        form = page.locator("#key-form")
        form.wait_for(state="visible")
        assert "needs an API key" in page.locator("#key-message").inner_text()
        assert page.locator("#error").is_hidden()

        page.fill("#key-input", "not-the-key")
        page.click("#key-form button")
        expect(page.locator("#key-message")).to_contain_text("did not accept")
        assert form.is_visible()

        page.fill("#key-input", API_KEY)
        page.click("#key-form button")
        wait_for_model_info(page)
        assert form.is_hidden()
        assert page.evaluate("sessionStorage.getItem('bloodcell.apiKey')") == API_KEY

        page.set_input_files("#file-input", str(image))
        _check_result(page, "smear.png")
        assert form.is_hidden()

        # Kept for the session: a reload does not ask again.
        page.reload()
        wait_for_model_info(page)
        assert form.is_hidden()
    finally:
        page.context.close()
    assert sent[:3] == [None, "Bearer not-the-key", f"Bearer {API_KEY}"]
    assert len(sent) == 5 and all(h == f"Bearer {API_KEY}" for h in sent[3:])


# --- a model that knows its limits --------------------------------------------------------------


def test_out_of_scope_image_shows_the_card_and_no_class(browser, scoped_server, tmp_path) -> None:
    from tests.serve.conftest import noise_png

    page = new_page(browser)
    try:
        page.goto(scoped_server.url + "/")
        wait_for_model_info(page)
        image = tmp_path / "noise.png"
        image.write_bytes(noise_png())
        page.set_input_files("#file-input", str(image))
        card = page.locator(".result").first
        card.locator(".out-of-scope").wait_for(state="visible")
        assert (
            "Outside what this model was trained on" in card.locator(".out-of-scope").inner_text()
        )
        label = card.locator(".label").inner_text()
        assert label == "No answer" and label not in DISPLAY_NAMES.values()
        assert card.locator(".chart .value").count() == 0
        assert card.locator(".uncertain-flag").is_hidden()
        assert card.locator(".heatmap-figure").is_hidden()
        if shot := os.environ.get("BLOODCELL_SCREENSHOT_OOD"):
            page.screenshot(path=shot, full_page=True)
    finally:
        page.context.close()
