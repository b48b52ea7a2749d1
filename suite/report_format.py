"""Report rendering, one module per format behind one entry point, `render`:

- `suite.report_blocks`: the report as neutral blocks (what md, rich and html tables show);
- `suite.report_md`: Markdown; `suite.report_rich`: the terminal; `suite.report_html`: one
  self-contained page with inline SVG charts; `suite.report_json`: the documented JSON shape.
"""

from __future__ import annotations

from suite.report import Report
from suite.store import Store
from suite.report_blocks import (  # noqa: F401  (re-exported)
    Block,
    Bullets,
    Heading,
    Paragraph,
    TableBlock,
    comparison_blocks,
    model_blocks,
    provenance_blocks,
    report_blocks,
)
from suite.report_compare import Comparison
from suite.report_html import to_html
from suite.report_json import to_json
from suite.report_md import to_markdown
from suite.report_rich import to_console  # noqa: F401  (re-exported)

FORMATS = ("rich", "md", "html", "json")
ALIASES = {"markdown": "md"}


def render(fmt: str, report: Report, comparison: Comparison | None, store: Store | None = None) -> str:
    """The report as text in `fmt` (md, html, json; rich is printed by `to_console`). The HTML page
    reads its charts' curves and histograms from `store`."""
    fmt = ALIASES.get(fmt, fmt)
    if fmt == "json":
        return to_json(report, comparison)
    if fmt == "md":
        return to_markdown(report_blocks(report, comparison))
    if fmt == "html":
        return to_html(report, comparison, store)
    raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
