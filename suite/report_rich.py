"""The report in the terminal: headings and text through rich's Markdown, tables through
`suite.fit` (boxed, frameless, or one `field: value` record per row when the width is too small),
so at 80 columns or in a pipe no header is cut and no id or number is folded."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from suite.fit import Col, fit_table
from suite.report_blocks import Block, Heading, TableBlock
from suite.report_md import to_markdown

STYLES = {"healthy": "green", "partial": "yellow", "unhealthy": "red"}


def _table(block: TableBlock, width: int):
    cols = [Col(header, whole=whole, justify="left") for header, whole in zip(block.headers, block.whole)]
    health = len(block.headers) - 1 if block.kind == "layers" else -1
    rows = []
    for row, verdict in zip(block.rows, block.verdicts):
        cells: list[str | Text] = list(row)  # str cells are printed literally, never read as markup
        if health >= 0 and verdict:
            cells[health] = Text(row[health], style=STYLES[verdict])
        rows.append(cells)
    return fit_table(cols, rows, width)


def to_console(blocks: list[Block], console: Console) -> None:
    """Blocks in order; a blank line before each section heading and after each table, so the
    report reads in a pipe or a CI log where headings carry no style."""
    for index, block in enumerate(blocks):
        if isinstance(block, TableBlock):
            console.print(_table(block, console.width))
            console.print()
        else:
            if isinstance(block, Heading) and index and not isinstance(blocks[index - 1], TableBlock):
                console.print()
            console.print(Markdown(to_markdown([block])))
