"""A DataTable that survives refreshes: rows keyed by id, sort and cursor kept.

Screens hand it the whole content on every refresh (`show`); it sorts the rows by the chosen
column's raw values (numbers, not their formatted text), puts the cursor back on the row with
the same key (an SAE id, a run id) and keeps the scroll position, so rows appearing, vanishing
or changing during a run never move the user's place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable


@dataclass
class Column:
    key: str
    label: str | Text
    sortable: bool = True


@dataclass
class Row:
    key: str
    cells: list[RenderableType]
    values: list[Any] = field(default_factory=list)  # raw sort value per column (None sorts last)


def _sort_value(value: Any) -> tuple:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0, "")
    if isinstance(value, (int, float)):
        return (0, 0, float(value))
    return (0, 1, str(value))


class KeyedTable(DataTable):
    """Row cursor; click a header (or press `o` / `O`) to sort by a column, again to reverse.
    Past `page_size` rows it shows one page at a time (`]` / `[`): sorting orders every row,
    and only a page's rows are built, so a table of thousands of SAEs stays quick."""

    BINDINGS = [
        Binding("o", "sort_next", "Sort by next column", show=False),
        Binding("O", "sort_reverse", "Reverse sort", key_display="O", show=False),
        Binding("right_square_bracket", "page(1)", "Next page of rows", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page of rows", key_display="[", show=False),
    ]
    PAGE_SIZE = 200

    class Paged(Message):
        """The page shown changed (its note says which rows)."""

        def __init__(self, table: KeyedTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> KeyedTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None, header_height: int = 1,
                 page_size: int | None = None):
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True, header_height=header_height)
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.page_size = page_size or self.PAGE_SIZE
        self.page = 0
        self._columns: list[Column] = []
        self._rows: list[Row] = []

    @property
    def pages(self) -> int:
        return max(1, -(-len(self._rows) // self.page_size))

    @property
    def page_note(self) -> str:
        """`rows 201–400 of 2,500 (] next, [ previous page)`, or "" when one page holds every row."""
        if self.pages == 1:
            return ""
        first = self.page * self.page_size
        last = min(first + self.page_size, len(self._rows))
        return f"rows {first + 1:,}–{last:,} of {len(self._rows):,} (] next, [ previous page)"

    def action_page(self, step: int) -> None:
        page = min(max(self.page + step, 0), self.pages - 1)
        if page != self.page:
            self.page = page
            self._redraw(keep_cursor=False)
            self.move_cursor(row=0, animate=False)

    # ------------------------------------------------------------------ content

    def show(self, columns: list[Column], rows: list[Row]) -> None:
        """Replace the content, keeping cursor row (by key), scroll position and sort; content
        equal to what is shown is not redrawn (a refresh of an idle file costs nothing)."""
        same_columns = [(c.key, str(c.label)) for c in columns] == [(c.key, str(c.label)) for c in self._columns]
        if same_columns and rows == self._rows:
            return
        if not same_columns:
            self.clear(columns=True)
            for column in columns:
                self.add_column(column.label, key=column.key)
            self._columns = list(columns)
            if self.sort_column not in {c.key for c in columns}:
                self.sort_column, self.sort_reverse = None, False
        self._rows = list(rows)
        self._redraw()

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count or not 0 <= self.cursor_row < self.row_count:
            return None
        key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return str(key.value)

    def row_keys(self) -> list[str]:
        """Keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def _sorted(self) -> list[Row]:
        if self.sort_column is None:
            return self._rows
        index = [c.key for c in self._columns].index(self.sort_column)
        keyed = [(_sort_value(r.values[index] if index < len(r.values) else None), r) for r in self._rows]
        known = [pair for pair in keyed if pair[0][0] == 0]
        unknown = [r for value, r in keyed if value[0] == 1]
        known.sort(key=lambda pair: pair[0], reverse=self.sort_reverse)  # stable: ties keep their order
        return [r for _, r in known] + unknown  # missing values last in either direction

    def _redraw(self, keep_cursor: bool = True) -> None:
        keep, row_before = (self.cursor_key, self.cursor_row) if keep_cursor else (None, 0)
        scroll = self.scroll_offset
        ordered = self._sorted()
        page_before = self.page
        if keep is not None:  # the cursor's row may have moved to another page: follow it
            at = next((i for i, row in enumerate(ordered) if row.key == keep), None)
            if at is not None:
                self.page = at // self.page_size
        self.page = min(self.page, self.pages - 1)
        self.clear()
        for row in ordered[self.page * self.page_size:(self.page + 1) * self.page_size]:
            self.add_row(*row.cells, key=row.key)
        if self.page != page_before or self.pages > 1:
            self.post_message(self.Paged(self))
        if not self.row_count:
            return
        if keep is not None and keep in self.rows:
            target = self.get_row_index(keep)
        else:
            target = min(max(row_before, 0), self.row_count - 1)
        self.move_cursor(row=target, animate=False, scroll=False)
        self.scroll_to(scroll.x, scroll.y, animate=False, immediate=True)

    # ------------------------------------------------------------------ sorting

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = self.sort_column == column and not self.sort_reverse
        self.sort_column, self.sort_reverse = column, reverse
        self._redraw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = str(event.column_key.value)
        if any(c.key == key and c.sortable for c in self._columns):
            self.sort_by(key)

    def action_sort_next(self) -> None:
        sortable = [c.key for c in self._columns if c.sortable]
        if not sortable:
            return
        nxt = sortable[0] if self.sort_column not in sortable else \
            sortable[(sortable.index(self.sort_column) + 1) % len(sortable)]
        self.sort_by(nxt, reverse=False)

    def action_sort_reverse(self) -> None:
        if self.sort_column is not None:
            self.sort_by(self.sort_column, reverse=not self.sort_reverse)
