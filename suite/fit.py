"""Fit a table to the terminal width, or fall back to records: one shared rule for every command.

Why: rich shrinks a table that is too wide by cutting or folding any column, so at 80 columns or
in a pipe an SAE id or a model id came out as `meta-` / `llama` / `/Lla…` slivers. Here each
column says whether its values must stay whole (ids, model ids, statuses, numbers) or may wrap at
word boundaries (free text such as notes and errors). `fit_table` then tries, in order:

1. the table as given (boxed), if it fits at its natural width or by wrapping the wrap columns
   down to their minimum (`WRAP_MIN` cells, or less if their values are narrower; headers wrap
   at spaces, never inside a word; a word wider than its column folds);
2. the same table without a frame (bold headers, two spaces between columns: ~1 cell per column
   less);
3. records: one block per row, `field: value` lines, a blank line between blocks. A value longer
   than the width wraps at spaces and is never cut.

Usage (a rich `Console` prints the result; `console.width` is COLUMNS or 80 in a pipe):

    cols = [Col("sae", whole=True), Col("model id", whole=True), Col("note")]
    console.print(fit_table(cols, rows, console.width, title="plan"))

Cells are `str` (printed literally, never read as rich markup) or `rich.text.Text` (styled).
`plain_table` is the frameless, unwrapped variant for pipes (values whole, records otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box as boxes
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

Cell = str | Text

WRAP_MIN = 12  # a wrap column is never made narrower than this (or its widest value, if narrower)


@dataclass(frozen=True)
class Col:
    """A column: `whole` values are never wrapped, folded or cut (ids, model ids, statuses)."""

    header: str
    whole: bool = False
    justify: str = "left"  # left | right


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def _lines(cell: Cell) -> list[str]:
    return _text(cell).plain.splitlines() or [""]


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def _natural(col: Col, cells: list[Cell]) -> int:
    return max([cell_len(line) for cell in cells for line in _lines(cell)] + [cell_len(col.header)])


def _minimum(col: Col, cells: list[Cell]) -> int:
    header = _longest_word(col.header)
    if col.whole:
        return max(header, *(cell_len(line) for cell in cells for line in _lines(cell)), 1)
    return max(header, min(_natural(Col(""), cells), WRAP_MIN), 1)


def _widths(naturals: list[int], minimums: list[int], room: int) -> list[int] | None:
    """Column content widths summing to at most `room`: every column at least its minimum,
    the widest wrap columns narrowed first (one cap for all). None when the minimums do not fit."""
    if sum(naturals) <= room:
        return naturals
    if sum(minimums) > room:
        return None
    low, high = 0, max(naturals)
    while low < high:  # the largest cap whose widths still fit
        cap = (low + high + 1) // 2
        if sum(max(m, min(n, cap)) for n, m in zip(naturals, minimums)) <= room:
            low = cap
        else:
            high = cap - 1
    return [max(m, min(n, low)) for n, m in zip(naturals, minimums)]


def _frame(compact: bool, count: int) -> int:
    """Cells a table's frame and padding take: padding 1 each side of every cell, plus the
    vertical lines of a boxed table (the compact frame has none, and no edge padding)."""
    return 2 * count - 2 if compact else 3 * count + 1


def _table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], widths: list[int] | None, compact: bool,
           title: str | None, plain: bool = False) -> Table:
    table = Table(title=Text(title) if title else None, title_justify="left",
                  box=None if compact else boxes.HEAVY_HEAD, header_style="" if plain else "bold",
                  show_edge=not compact, pad_edge=not compact, expand=False)
    for index, col in enumerate(cols):
        # no no_wrap for whole columns: it would stop their headers wrapping at spaces; their
        # widths are never below their widest value, so their values do not wrap anyway
        table.add_column(Text(col.header), justify=col.justify,  # type: ignore[arg-type]
                         no_wrap=plain, overflow="fold",
                         width=widths[index] if widths is not None else None)
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    return table


def records(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None = None) -> Group:
    """One block per row, `field: value` lines with values aligned (a long value wraps under
    itself); empty values are left out; a blank line between blocks."""
    parts: list[RenderableType] = [Text(title, style="bold")] if title else []
    for index, row in enumerate(rows):
        if index or title:
            parts.append(Text(""))
        block = Table.grid(padding=(0, 1))
        block.add_column(no_wrap=True, style="dim")
        block.add_column(overflow="fold")
        for col, cell in zip(cols, row):
            value = _text(cell)
            if value.plain.strip():
                block.add_row(Text(f"{col.header}:"), value)
        parts.append(block)
    return Group(*parts)


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, title: str | None = None
              ) -> RenderableType:
    """A boxed table, a lighter one, or records: the first that fits `width` cells."""
    cells = [[row[i] for row in rows] for i in range(len(cols))]
    naturals = [_natural(col, c) for col, c in zip(cols, cells)]
    minimums = [_minimum(col, c) for col, c in zip(cols, cells)]
    for compact in (False, True):
        widths = _widths(naturals, minimums, width - _frame(compact, len(cols)))
        if widths is not None:
            return _table(cols, rows, None if widths == naturals else widths, compact, title)
    return records(cols, rows, title)


def plain_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, title: str | None = None
                ) -> RenderableType:
    """For pipes: aligned columns with no frame and no wrapping, every value whole; records when
    the widest row would not fit `width`."""
    cells = [[row[i] for row in rows] for i in range(len(cols))]
    naturals = [_natural(col, c) for col, c in zip(cols, cells)]
    if sum(naturals) + 2 * (len(cols) - 1) > width or any(len(_lines(c)) > 1 for row in rows for c in row):
        return records(cols, rows, title)
    whole = [Col(col.header, True, col.justify) for col in cols]
    return _table(whole, rows, None, compact=True, title=title, plain=True)


__all__ = ["WRAP_MIN", "Cell", "Col", "fit_table", "plain_table", "records"]
