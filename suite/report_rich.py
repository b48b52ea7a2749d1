"""The report in the terminal: headings and text through rich's Markdown, tables fitted to the
console width (boxed, frameless, or one record per row), ids and numbers never cut."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from suite.report_blocks import Block, TableBlock
from suite.report_md import to_markdown


def to_console(blocks: list[Block], console: Console) -> None:
    for block in blocks:
        if isinstance(block, TableBlock):
            table = Table(show_lines=False)
            for header in block.headers:  # Text: names from the spec are never read as markup or emoji
                table.add_column(Text(header), overflow="fold")
            for row in block.rows:
                table.add_row(*(Text(cell) for cell in row))
            console.print(table)
        else:
            console.print(Markdown(to_markdown([block])))
