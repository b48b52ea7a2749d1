"""A query console that runs queries as `sae-bench sql` does (suite.store.readonly): read-only
with external access off, on a snapshot while a run writes the file."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Input, Static

from suite.report import sql_cell
from suite.store.readonly import QueryRefused, run_query
from tui.screens.base import DataScreen


class SqlScreen(DataScreen):
    """Enter runs the query typed in the box (`r` runs it again on the file as it is now)."""

    WIDGET_KEYS = [("query box", Input)]  # listed in the help
    AUTO_REFRESH = False  # a query reruns when asked, not behind the user's back

    def body(self) -> ComposeResult:
        yield Input(placeholder="select * from layer_summary limit 20", id="query")
        yield Static("", id="sql-error")
        yield DataTable(id="result", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#query", Input).focus()

    def load(self) -> None:
        query = self.query_one("#query", Input).value
        if query.strip():
            self.run_sql(query)

    @on(Input.Submitted, "#query")
    def submitted(self, event: Input.Submitted) -> None:
        self.run_sql(event.value)

    def run_sql(self, query: str) -> None:
        table = self.query_one("#result", DataTable)
        error = self.query_one("#sql-error", Static)
        table.clear(columns=True)
        try:
            result = run_query(self.view.path, query)
        except QueryRefused as exc:
            error.update(Text(str(exc), style="red"))
            return
        error.update(f"{len(result.rows)} row(s)" + (" (snapshot: a run is writing the file)" if result.snapshot
                                                     else ""))
        if result.names:  # Text, not str: DataTable reads str cells as markup
            table.add_columns(*(Text(name) for name in result.names))
            for row in result.rows:
                table.add_row(*(Text(sql_cell(v)) for v in row))
