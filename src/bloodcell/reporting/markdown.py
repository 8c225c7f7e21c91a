"""Markdown pieces shared by every report: percentages, intervals, tables, putting a section
into an existing `report.md` without duplicating it, and markdown as HTML for the web page."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal ('n/a' for None)."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def ci_range(ci: Sequence[float] | None, percent: bool = True) -> str:
    """'95.6%–98.8%' (or '0.953–0.988' with `percent=False`); 'n/a' without an interval."""
    if not ci:
        return "n/a"
    return f"{pct(ci[0])}–{pct(ci[1])}" if percent else f"{ci[0]:.3f}–{ci[1]:.3f}"


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines: the header, its rule and one line per row of cells."""
    lines = [_row(head), "|---" * len(head) + "|"]
    return lines + [_row(cells) for cells in rows]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def upsert_section(path: Path, title: str, lines: Sequence[str]) -> Path:
    """Put `## title` into a markdown file, replacing an earlier one; before the data
    provenance section when there is one, else at the end (creating the file if needed)."""
    text = path.read_text() if path.is_file() else "# Robustness\n"
    block = "\n".join([f"## {title}", "", *lines, "", ""])
    heading = f"\n## {title}\n"
    if heading in text:
        start = text.index(heading) + 1
        nxt = text.find("\n## ", start)
        text = text[:start] + (text[nxt + 1 :] if nxt >= 0 else "")
    anchor = text.find("\n## Data provenance\n")
    if anchor >= 0:
        text = text[: anchor + 1] + block + text[anchor + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text.rstrip("\n") + "\n")
    return path


def strip_front_matter(text: str) -> str:
    """The text after a leading YAML front matter block (`---` ... `---`), if there is one:
    it is metadata for model hubs, not something to show a reader."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() == "---":
                return "".join(lines[i + 1 :])
    return text


def to_html(text: str, heading_offset: int = 0) -> str:
    """Markdown (CommonMark and tables) as an HTML fragment, safe to put into a page: raw HTML
    in the text is escaped, never passed through, and images are not rendered (the page loads
    nothing from elsewhere). Front matter is dropped; `heading_offset` moves every heading down
    that many levels, for a document shown inside another one (`#` becomes `<h3>` with 2)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")
    tokens = md.parse(strip_front_matter(text))
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + heading_offset)}"
    return md.renderer.render(tokens, md.options, {})
