"""The page in a real browser: Debian's chromium, driven by Playwright, against `bloodcell serve`.

Every upload goes through the page's own file input (or a drop), as a user's would. Set
BLOODCELL_SCREENSHOT=path.png to keep a screenshot of the page after a prediction.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.serve.conftest import API_KEY, LiveServer, png_bytes

from bloodcell.labels import DISPLAY_NAMES, LABELS
from bloodcell.predict.columns import csv_header, csv_row, group_csv_header, group_csv_row
from bloodcell.predict.grouping import group_by_folder
from bloodcell.predict.records import Prediction

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


def new_page(browser, width: int = 1000, height: int = 1100):
    """A page in a fresh context: its own session storage, and its console errors in
    `page.errors`."""
    page = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    ).new_page()
    page.set_default_timeout(30_000)
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def wait_for_model_info(page) -> None:
    # expect() polls without eval, which the page's Content-Security-Policy forbids.
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-model", "ready", timeout=30_000)


@pytest.fixture
def page(browser, live_server: LiveServer) -> Iterator:
    page = new_page(browser)
    try:
        page.goto(live_server.url + "/")
        wait_for_model_info(page)
        yield page
    finally:
        page.context.close()


def write_files(tmp_path: Path, files: dict[str, bytes]) -> list[str]:
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    return paths


def smears(n: int, prefix: str = "smear") -> dict[str, bytes]:
    return {f"{prefix}-{i}.png": png_bytes(LABELS[i % 4], 10 + i) for i in range(n)}


#: A text file that a file picker offers as an image, by its name.
NOT_AN_IMAGE = {"notes.jpg": b"this is a text file, not an image"}


def upload(page, paths: list[str], n_rows: int, case: str | None = None) -> None:
    """Choose files with the page's input and wait until the table has `n_rows`, all answered."""
    from playwright.sync_api import expect

    if case is not None:
        page.fill("#case-input", case)
    page.set_input_files("#file-input", paths)
    rows = page.locator("#batch-table tbody tr")
    expect(rows).to_have_count(n_rows, timeout=60_000)
    expect(page.locator("#batch-table tbody tr.row-pending")).to_have_count(0, timeout=60_000)
    expect(page.locator("#status")).to_contain_text("answered", timeout=60_000)


def card(page, name: str):
    return page.locator(".result", has=page.locator(".filename", has_text=name)).first


def api_answer(server: LiveServer, files: dict[str, bytes], **params) -> dict:
    """What the API answers for the same files in one request, as the page sent them."""
    parts = [("files", (name, data, "image/png")) for name, data in files.items()]
    return httpx.post(f"{server.url}/v1/predict", files=parts, params=params, timeout=60).json()


def _check_result(page, name: str) -> None:
    result = card(page, name)
    result.locator(".heatmap-figure").wait_for(state="visible")
    assert result.locator(".filename").inner_text() == name
    assert result.locator(".label").inner_text() in DISPLAY_NAMES.values()
    assert "% confidence" in result.locator(".confidence").inner_text()
    assert result.locator(".chart .value").count() == len(DISPLAY_NAMES)
    # A random model is unsure of everything, and the page must say so.
    assert result.locator(".uncertain-flag").is_visible()
    for img in (".preview", ".heatmap"):
        width = result.locator(img).evaluate("el => el.complete ? el.naturalWidth : 0")
        assert width == 64, img
    assert result.locator(".heatmap").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#error").is_hidden()


def test_upload_with_file_picker_shows_prediction_and_heatmap(page, tmp_path: Path) -> None:
    (image,) = write_files(tmp_path, {"smear.png": png_bytes("pro_b", 7)})
    assert "not a diagnosis" in page.locator("#notice").inner_text()
    footer = page.locator("#model-info").inner_text()
    assert "Test accuracy 50.0% on 40 images" in footer
    for engineer_word in ("torch", "onnx", "version", "detector", "mobilenet"):
        assert engineer_word not in footer, engineer_word
    upload(page, [image], 1)
    _check_result(page, "smear.png")
    # One time for the upload, none per card: a batch's time is not each image's.
    assert page.locator(".result .timing").count() == 0
    assert "1 file answered in" in page.locator("#status").inner_text()
    assert page.errors == []
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
    (bad,) = write_files(tmp_path, {"notes.png": b"this is a text file, not an image"})
    upload(page, [bad], 1)
    result = card(page, "notes.png")
    error = result.locator(".file-error")
    assert error.is_visible()
    assert "notes.png" in error.inner_text() and "not an image" in error.inner_text()
    assert result.locator(".label").inner_text() == "Not classified"
    assert result.locator(".images").is_hidden()  # no broken picture
    assert result.locator(".chart .value").count() == 0


def test_a_bad_file_in_a_batch_is_reported_beside_every_answer(page, tmp_path: Path) -> None:
    """Four good smears and a text file named .jpg: four answers and one error, not one error."""
    good = smears(4)
    files = {**dict(list(good.items())[:2]), **NOT_AN_IMAGE, **dict(list(good.items())[2:])}
    upload(page, write_files(tmp_path, files), 5)
    assert page.locator(".result").count() == 5
    for name in good:
        result = card(page, name)
        result.locator(".heatmap-figure").wait_for(state="visible")
        assert result.locator(".label").inner_text() in DISPLAY_NAMES.values()
        assert result.locator(".chart .value").count() == len(LABELS)
        assert result.locator(".file-error").is_hidden()
    bad = card(page, "notes.jpg")
    assert bad.locator(".file-error").is_visible()
    assert "not an image" in bad.locator(".file-error-text").inner_text()
    # The table, in the order sent: the bad file third, with its reason.
    rows = page.locator("#batch-table tbody tr")
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(5)] == list(files)
    assert "row-error" in rows.nth(2).get_attribute("class")
    assert rows.nth(2).locator("td").nth(5).inner_text().startswith("Error: not an image")
    counts = {
        li.get_attribute("data-count"): int(li.locator(".count-value").inner_text())
        for li in page.locator("#counts li").all()
    }
    assert counts["count-files"] == 5 and counts["count-errors"] == 1
    assert sum(counts[f"count-{lb}"] for lb in LABELS) + counts["count-no-answer"] == 4
    status = page.locator("#status").inner_text()
    assert "5 files answered" in status and "4 classified, 1 could not be read" in status
    assert page.locator("#error").is_hidden()  # no request-wide error: each file has its own
    assert page.errors == []  # 207 is not a failed request in the console


def _read_download(page, button: str) -> list[list[str]]:
    with page.expect_download() as info:
        page.click(button)
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text)))


def _record(result: dict, engine: str, path: str) -> Prediction:
    """The API's result as the command line's record, to write it with `csv_row`."""
    if result["error"]:
        return Prediction(path=path, error=result["error"])
    names = {f.name for f in fields(Prediction)}
    values = {k: v for k, v in result.items() if k in names}
    return Prediction(**{**values, "path": path, "engine": engine})


def test_csv_download_has_the_columns_of_predict_and_a_row_per_file(
    page, live_server: LiveServer, tmp_path: Path
) -> None:
    files = {**smears(3), **NOT_AN_IMAGE}
    upload(page, write_files(tmp_path, files), 4, case="Slide 7")
    rows = _read_download(page, "#download-csv")
    assert rows[0] == csv_header(LABELS)
    assert len(rows) == 1 + len(files)
    assert [r[0] for r in rows[1:]] == [f"Slide 7/{name}" for name in files]
    # Cell for cell what `bloodcell predict --format csv` writes for the same answers.
    body = api_answer(live_server, files)
    records = [_record(r, body["engine"], f"Slide 7/{r['filename']}") for r in body["results"]]
    assert rows[1:] == [csv_row(p, LABELS) for p in records]
    error_row = dict(zip(rows[0], rows[4], strict=True))
    assert error_row["error"].startswith("not an image") and error_row["label"] == ""
    # The case summary is `--group-by-folder`'s, the case being the folder.
    groups = _read_download(page, "#download-groups")
    assert groups[0] == group_csv_header(LABELS)
    expected = [group_csv_row(g, LABELS) for g in group_by_folder(records, LABELS)]
    assert groups[1:] == [[str(v) for v in row] for row in expected]
    assert groups[1][:3] == ["Slide 7", "3", "1"]


def test_results_accumulate_until_cleared(page, tmp_path: Path) -> None:
    first = write_files(tmp_path, smears(1, "first"))
    upload(page, first, 1, case="Case A")
    upload(page, write_files(tmp_path, smears(2, "second")), 3, case="Case B")
    assert page.locator(".result").count() == 3
    assert card(page, "first-0.png").locator(".case-name").inner_text() == "Case: Case A"
    group_rows = page.locator("#group-table tbody tr")
    assert group_rows.count() == 2
    assert group_rows.nth(0).locator("td").nth(0).inner_text() == "Case A"
    assert group_rows.nth(1).locator("td").nth(1).inner_text() == "2"  # images in Case B

    page.once("dialog", lambda d: d.dismiss())  # "Clear all 3 results?" - no
    page.click("#clear")
    assert page.locator("#batch-table tbody tr").count() == 3

    page.once("dialog", lambda d: d.accept())
    page.click("#clear")
    page.locator("#batch").wait_for(state="hidden")
    assert page.locator(".result").count() == 0
    assert page.locator("#batch-table tbody tr").count() == 0
    upload(page, first, 1)  # a fresh start after clearing
    assert page.locator("#batch-table tbody tr td").nth(0).inner_text() == "4"


def test_table_sorts_by_column(page, tmp_path: Path) -> None:
    files = {f"{c}-smear.png": png_bytes(LABELS[i], 30 + i) for i, c in enumerate("dbca")}
    upload(page, write_files(tmp_path, {**files, **NOT_AN_IMAGE}), 5)

    def column(i: int) -> list[str]:
        cells = page.locator(f"#batch-table tbody tr td:nth-child({i + 1})")
        return [cells.nth(j).inner_text() for j in range(cells.count())]

    def percents() -> list[float]:
        return [float(v.rstrip("%")) for v in column(4) if v != "—"]

    header = page.locator("#batch-table th[data-key='confidence']")
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert percents() == sorted(percents(), reverse=True) and column(4)[-1] == "—"
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert percents() == sorted(percents())
    page.click("#batch-table th[data-key='file'] button")
    assert column(1) == sorted([*files, "notes.jpg"])
    assert header.get_attribute("aria-sort") == "none"


def test_heatmap_has_a_legend_and_a_class_choice(
    page, live_server: LiveServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    files = {"smear.png": png_bytes("pre_b", 9, size=96)}
    upload(page, write_files(tmp_path, files), 1)
    figure = card(page, "smear.png").locator(".heatmap-figure")
    figure.wait_for(state="visible")
    predicted = api_answer(live_server, files)["results"][0]["label"]
    title = figure.locator(".heatmap-title")
    assert title.inner_text().startswith(f"Heatmap for {DISPLAY_NAMES[predicted]} (the predicted")
    legend = figure.locator(".legend")
    assert legend.is_visible() and legend.inner_text().split() == ["low", "high"]
    gradient = legend.locator(".legend-bar").evaluate("el => getComputedStyle(el).backgroundImage")
    assert gradient.startswith("linear-gradient")
    assert "cannot show where disease is" in figure.locator(".heatmap-note").inner_text()

    select = figure.locator(".heatmap-target")
    assert select.locator("option").all_inner_texts() == list(DISPLAY_NAMES.values())
    assert select.input_value() == predicted
    other = next(lb for lb in LABELS if lb != predicted)
    select.select_option(other)
    expect(title).to_have_text(f"Heatmap for {DISPLAY_NAMES[other]}: where the model looked")
    # The map shown is the API's for that class, not the predicted class's.
    want = api_answer(live_server, files, explain_class=other)["results"][0]["heatmap_png"]
    assert figure.locator(".heatmap").get_attribute("src") == f"data:image/png;base64,{want}"

    figure.locator(".heatmap-opacity").fill("30")
    assert figure.locator(".heatmap").evaluate("el => el.style.opacity") == "0.3"
    select.select_option(predicted)  # back again: kept, not asked for again
    expect(title).to_contain_text("(the predicted class)")


def test_cells_found_are_outlined_and_a_field_without_says_so(
    page, live_server: LiveServer, tmp_path: Path
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), (236, 226, 196)).save(buf, "PNG")  # a flat field: no cell
    files = {"smear.png": png_bytes("benign", 2, size=96), "empty-field.png": buf.getvalue()}
    upload(page, write_files(tmp_path, files), 2)
    answer = {r["filename"]: r for r in api_answer(live_server, files)["results"]}

    boxes = answer["smear.png"]["cell_boxes"]
    assert boxes, "the synthetic smear has white cells"
    smear = card(page, "smear.png")
    outlines = smear.locator(".preview-figure .cell-box")
    assert outlines.count() == len(boxes)
    caption = smear.locator(".cells-caption").inner_text()
    assert f"{len(boxes)} white cell" in caption and "outlined" in caption
    # Drawn where the finder put them, scaled from image pixels to the displayed image.
    shown = smear.locator(".preview").bounding_box()
    scale = shown["width"] / 96
    top, left, bottom, right = boxes[0]
    drawn = outlines.nth(0).bounding_box()
    assert drawn["x"] - shown["x"] == pytest.approx(left * scale, abs=1.5)
    assert drawn["y"] - shown["y"] == pytest.approx(top * scale, abs=1.5)
    assert drawn["width"] == pytest.approx((right - left) * scale, abs=1.5)
    assert smear.locator(".heatmap-figure .cell-box").count() == len(boxes)

    assert answer["empty-field.png"]["reason"] == "no white cell found"
    empty = card(page, "empty-field.png")
    assert empty.locator(".cells-caption").inner_text() == "No white cell found in this field."
    assert empty.locator(".cell-box").count() == 0
    assert empty.locator(".out-of-scope").is_visible()
    assert "No white blood cell was found" in empty.locator(".oos-text").inner_text()
    row = page.locator("#batch-table tbody tr").nth(1)
    assert row.locator("td").nth(5).inner_text() == "Out of scope: no white cell found"


def test_phone_width_keeps_bars_usable_without_horizontal_scroll(
    browser, live_server: LiveServer, tmp_path: Path
) -> None:
    page = new_page(browser, 390, 844)
    try:
        page.goto(live_server.url + "/")
        wait_for_model_info(page)
        long_name = "scanner-export-2024-03-17-patient-0042-field-0007-x100-oil.png"
        files = {**smears(2), long_name: png_bytes("pro_b", 5), **NOT_AN_IMAGE}
        upload(page, write_files(tmp_path, files), 4, case="A long case name for slide 3")
        card(page, long_name).locator(".heatmap-figure").wait_for(state="visible")
        for details in ("#guide", "#tech"):
            page.locator(f"{details} summary").click()
        width = page.evaluate("innerWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        tracks = page.locator(".chart .track")
        assert tracks.count() == 3 * len(LABELS)
        for i in range(tracks.count()):
            assert tracks.nth(i).bounding_box()["width"] >= 200, i
        # The long class name wraps onto its own line instead of squeezing the bar.
        name = page.locator(".chart .name", has_text="Malignant Early Pre-B").first
        assert name.bounding_box()["x"] + name.bounding_box()["width"] <= width
        if shot := os.environ.get("BLOODCELL_SCREENSHOT_PHONE"):
            page.screenshot(path=shot, full_page=True)
    finally:
        page.context.close()


def test_words_for_a_haematologist(browser, live_server: LiveServer, model_dir: Path) -> None:
    from playwright.sync_api import expect

    from bloodcell.reporting.model_card import write_model_card
    from bloodcell.run_dir import CARD_FILE

    card_path = write_model_card(model_dir)  # the server reads the card per request
    card_path.write_text(card_path.read_text() + "\nA line with <img src=x onerror=alert(1)>.\n")
    page = new_page(browser)
    try:
        page.goto(live_server.url + "/")
        wait_for_model_info(page)
        guide = page.locator("#guide")
        assert guide.get_attribute("open") is None  # folded until asked for
        guide.locator("summary").click()
        text = guide.inner_text()
        assert "calibrated probability" in text and "Below 80.0%" in text
        assert "flow cytometry" in text
        notes = page.locator("#class-notes dt").all_inner_texts()
        assert notes == list(DISPLAY_NAMES.values())
        assert "Hematogones" in page.locator("#class-notes").inner_text()

        tech = page.locator("#tech")
        assert tech.get_attribute("open") is None
        tech.locator("summary").click()
        facts = tech.inner_text()
        assert "Engine\ntorch" in facts and "mobilenet_v2" in facts and "80.0%" in facts

        details = page.locator("#card-details")
        details.locator("summary").click()
        box = page.locator("#card-text")
        expect(box.locator("h3")).to_contain_text("B-ALL blood smear classifier")
        shown = box.inner_text()
        assert "Intended use" in shown and "Research use only" in shown
        for yaml_word in ("license:", "model-index", "---"):
            assert yaml_word not in shown, yaml_word
        assert "**" not in shown and box.locator("strong").count() > 0
        # The card's text is text: markup in it is shown, never run.
        assert "<img src=x onerror=alert(1)>" in shown
        assert box.locator("img, script").count() == 0
        assert page.errors == []
    finally:
        page.context.close()
        (model_dir / CARD_FILE).unlink(missing_ok=True)


def test_print_view_shows_results_without_controls(page, tmp_path: Path) -> None:
    upload(page, write_files(tmp_path, {**smears(1), **NOT_AN_IMAGE}), 2)
    card(page, "smear-0.png").locator(".heatmap-figure").wait_for(state="visible")
    page.emulate_media(media="print")
    for hidden in ("#upload", ".actions", "#guide", ".heatmap-controls"):
        assert page.locator(hidden).first.is_hidden(), hidden
    for shown in ("#notice", "#batch-table", ".result .verdict", ".legend"):
        assert page.locator(shown).first.is_visible(), shown
    page.emulate_media(media="screen")
    assert page.locator("#upload").is_visible()


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

        upload(page, [str(image)], 1)
        _check_result(page, "smear.png")
        assert form.is_hidden()

        # Kept for the session: a reload does not ask again.
        page.reload()
        wait_for_model_info(page)
        assert form.is_hidden()
    finally:
        page.context.close()
    assert sent[:3] == [None, "Bearer not-the-key", f"Bearer {API_KEY}"]
    # After the key: the model facts, the upload, its summary, the model facts after reload.
    assert len(sent) == 6 and all(h == f"Bearer {API_KEY}" for h in sent[3:])


# --- a model that knows its limits --------------------------------------------------------------


def test_out_of_scope_image_shows_the_card_and_no_class(browser, scoped_server, tmp_path) -> None:
    from tests.serve.conftest import noise_png

    page = new_page(browser)
    try:
        page.goto(scoped_server.url + "/")
        wait_for_model_info(page)
        image = tmp_path / "noise.png"
        image.write_bytes(noise_png())
        upload(page, [str(image)], 1)
        result = page.locator(".result").first
        result.locator(".out-of-scope").wait_for(state="visible")
        box = result.locator(".out-of-scope").inner_text()
        assert "Outside what this model was trained on" in box
        assert "Reason: unlike the training images." in box
        label = result.locator(".label").inner_text()
        assert label == "No answer" and label not in DISPLAY_NAMES.values()
        assert result.locator(".chart .value").count() == 0
        assert result.locator(".uncertain-flag").is_hidden()
        assert result.locator(".heatmap-figure").is_hidden()
        row = page.locator("#batch-table tbody tr").first
        assert row.locator("td").nth(3).inner_text() == "No class"
        assert row.locator("td").nth(5).inner_text() == "Out of scope: unlike the training images"
        # This model has prediction sets and a detector: the guide says what they mean.
        page.locator("#guide summary").click()
        assert "in the set 95.0% of the time" in page.locator("#guide-set").inner_text()
        assert page.errors == []
        if shot := os.environ.get("BLOODCELL_SCREENSHOT_OOD"):
            page.screenshot(path=shot, full_page=True)
    finally:
        page.context.close()
