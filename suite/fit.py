"""Fit a table to the terminal width, or fall back to records: one shared rule for every command.

Why: rich shrinks a table that is too wide by cutting or folding any column, so at 80 columns or
in a pipe an SAE id or a model id came out as `meta-` / `llama` / `/Lla…` slivers. Here each
column says whether its values must stay whole (ids, model ids, statuses, numbers) or may wrap at
word boundaries (free text such as notes and errors). `fit_table` then tries, in order:

1. the table as given (boxed), if it fits at its natural width or by wrapping the wrap columns
   down to their minimum (`WRAP_MIN` cells, or less if their values are narrower; headers wrap
   at spaces, never inside a word; a word wider than its column folds), as long as no cell
   wraps to more than `MAX_WRAPPED_LINES` lines;
2. the same table without a frame (bold headers, two spaces between columns), then with one space;
3. records: one block per row, `field: value` lines, a blank line between blocks. A value longer
   than the width wraps under itself at spaces, never cut (a single word longer than the room
   folds; in `plain_table`'s records it is left whole).

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
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

Cell = str | Text

MAX_WRAPPED_LINES = 4  # a row that would wrap taller than this reads better as a record
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


def _tall(cols: Sequence[Col], cells: list[list[Cell]], widths: list[int]) -> int:
    """About how many lines the tallest wrapped cell takes at these widths."""
    tallest = 1
    for col, column, width in zip(cols, cells, widths):
        if not col.whole:
            for cell in column:
                tallest = max(tallest, sum(-(-cell_len(line) // max(width, 1)) or 1 for line in _lines(cell)))
    return tallest


def _frame(layout: str, count: int) -> int:
    """Cells a layout's frame takes: "boxed" pads each cell by 1 on both sides and draws the
    vertical lines; "compact" has no lines and two spaces between columns; "tight" one space."""
    return {"boxed": 3 * count + 1, "compact": 2 * count - 2, "tight": count - 1}[layout]


def _table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], widths: list[int] | None, layout: str,
           title: str | None, plain: bool = False) -> Table:
    boxed = layout == "boxed"
    table = Table(title=Text(title) if title else None, title_justify="left",
                  box=boxes.HEAVY_HEAD if boxed else None, header_style="" if plain else "bold",
                  show_edge=boxed, pad_edge=boxed, expand=False,
                  padding=(0, 0, 0, 1) if layout == "tight" else (0, 1))
    for index, col in enumerate(cols):
        # no no_wrap for whole columns: it would stop their headers wrapping at spaces; their
        # widths are never below their widest value, so their values do not wrap anyway
        table.add_column(Text(col.header), justify=col.justify,  # type: ignore[arg-type]
                         no_wrap=plain, overflow="fold",
                         width=widths[index] if widths is not None else None)
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    return table


class Records:
    """One block per row, `field: value` lines with values aligned (a long value wraps under
    itself at spaces; a word wider than the room folds); empty values are left out; a blank line
    between blocks. Lines end where their text does (no padding to the width)."""

    def __init__(self, cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None = None,
                 fold: bool = True):
        self.cols, self.rows, self.title, self.fold = list(cols), [list(row) for row in rows], title, fold

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.title:
            yield Text(self.title, style="bold")
        for index, row in enumerate(self.rows):
            lines = [Text("")] if index or self.title else []
            shown = [(col.header, _text(cell)) for col, cell in zip(self.cols, row) if _text(cell).plain.strip()]
            pad = max((cell_len(name) for name, _ in shown), default=0) + 2
            room = max(options.max_width - pad, 8)
            for name, value in shown:
                if "\n" not in value.plain and cell_len(value.plain) <= room:
                    parts = [value]  # fits: rich's wrap would return it as it is, ~50x slower
                else:
                    parts = value.wrap(console, room, overflow="fold") if self.fold else _wrap_whole(value, room)
                for number, line in enumerate(parts):
                    label = Text(f"{name}:".ljust(pad) if number == 0 else " " * pad, style="dim")
                    line.rstrip()
                    lines.append(label + line)
            if all(line.cell_len <= options.max_width for line in lines):
                yield Text("\n", no_wrap=True, overflow="ignore").join(lines)  # one render per record
            else:
                yield from lines


def _wrap_whole(text: Text, room: int) -> list[Text]:
    """Greedy wrap at spaces that never breaks a word (a word wider than `room` overflows)."""
    out: list[Text] = []
    for line in text.split("\n"):
        plain, cuts, start, width = line.plain, [], 0, 0
        for word_start, word in _words(plain):
            end = word_start + len(word)
            if width and cell_len(plain[start:end]) > room:
                cuts.append(word_start)
                start = word_start
            width = cell_len(plain[start:end])
        out.extend(line.divide(cuts) if cuts else [line])
    return out


def _words(plain: str) -> list[tuple[int, str]]:
    found, index = [], 0
    for word in plain.split(" "):
        if word:
            found.append((index, word))
        index += len(word) + 1
    return found


def records(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None = None,
            fold: bool = True) -> Records:
    """Rows as records (see `Records`); `fold=False`: a word wider than the room is left whole."""
    return Records(cols, rows, title, fold)


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, title: str | None = None
              ) -> RenderableType:
    """A boxed table, a frameless one, a tight one, or records: the first that fits `width` cells."""
    cells = [[row[i] for row in rows] for i in range(len(cols))]
    naturals = [_natural(col, c) for col, c in zip(cols, cells)]
    minimums = [_minimum(col, c) for col, c in zip(cols, cells)]
    for layout in ("boxed", "compact", "tight"):
        widths = _widths(naturals, minimums, width - _frame(layout, len(cols)))
        if widths is not None and _tall(cols, cells, widths) <= MAX_WRAPPED_LINES:
            return _table(cols, rows, None if widths == naturals else widths, layout, title)
    return records(cols, rows, title)


def plain_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, title: str | None = None
                ) -> RenderableType:
    """For pipes: aligned columns with no frame and no wrapping, every value whole; records when
    the widest row would not fit `width`."""
    cells = [[row[i] for row in rows] for i in range(len(cols))]
    naturals = [_natural(col, c) for col, c in zip(cols, cells)]
    if sum(naturals) + 2 * (len(cols) - 1) > width or any(len(_lines(c)) > 1 for row in rows for c in row):
        return records(cols, rows, title, fold=False)
    return PlainColumns(cols, rows, naturals, title)


class PlainColumns:
    """What a frameless table with whole values prints (two spaces between columns, each padded
    to its widest value), written line by line: a rich Table renders ~0.4 ms a row, 8 s for the
    20,000 rows of a lab's results file, this ~100x less."""

    def __init__(self, cols: Sequence[Col], rows: Sequence[Sequence[Cell]], widths: list[int], title: str | None):
        self.cols, self.rows, self.widths, self.title = list(cols), rows, widths, title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.title:
            yield Text(self.title)
        lines = []
        for row in [[col.header for col in self.cols], *self.rows]:
            line = Text()
            for index, (col, cell, width) in enumerate(zip(self.cols, row, self.widths)):
                text, pad = _text(cell), " " * (width - cell_len(_text(cell).plain))
                line.append("  " if index else "")
                line.append_text(Text(pad) + text if col.justify == "right" else text + Text(pad))
            lines.append(line)
        yield Text("\n", no_wrap=True, overflow="ignore").join(lines)


__all__ = ["MAX_WRAPPED_LINES", "WRAP_MIN", "Cell", "Col", "fit_table", "plain_table", "records"]
