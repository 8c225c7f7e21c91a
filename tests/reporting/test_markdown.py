"""Markdown as HTML for the page: front matter dropped, markup in the text escaped."""

from __future__ import annotations

from bloodcell.reporting.markdown import strip_front_matter, to_html


def test_front_matter_is_dropped_only_when_closed() -> None:
    assert strip_front_matter("---\nlicense: x\n---\n# Title\n") == "# Title\n"
    assert strip_front_matter("\ufeff---\na: 1\n---\nbody") == "body"
    assert strip_front_matter("# Title\n---\n") == "# Title\n---\n"
    assert strip_front_matter("---\nnever closed\n") == "---\nnever closed\n"


def test_html_escapes_markup_and_moves_headings_down() -> None:
    text = "---\nlicense: x\n---\n# Card\n\n## Part\n\n**bold** <img src=x onerror=alert(1)>\n"
    html = to_html(text, heading_offset=2)
    assert "<h3>Card</h3>" in html and "<h4>Part</h4>" in html
    assert "<strong>bold</strong>" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "license" not in html


def test_tables_render_and_images_do_not() -> None:
    html = to_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n![chart](http://elsewhere/x.png)\n")
    assert "<table>" in html and "<td>1</td>" in html
    assert "<img" not in html
    assert to_html("###### deep", heading_offset=2).startswith("<h6>")
