"""The first screen: every run in the file, newest first."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from tui.cells import RUN_STATUS_STYLES
from tui.screens.base import DataScreen
from tui.widgets.table import Column, KeyedTable, Row

COLUMNS = [Column("run", "Run"), Column("suite", "Suite"), Column("started", "Started"), Column("status", "Status"),
           Column("saes", "SAEs done"), Column("failed", "Failed")]


class RunsScreen(DataScreen):
    """Runs with their status and how many of their SAEs are trained; Enter opens the layer tables."""

    BINDINGS = DataScreen.BINDINGS + [
        Binding("enter", "open", "Layers"),
        Binding("c", "app.open('compare')", "Compare"),
        Binding("s", "app.open('sql')", "SQL"),
    ]

    def body(self) -> ComposeResult:
        yield Label("Runs, newest first (times in UTC)", classes="title")
        yield KeyedTable(id="runs")

    def fetch(self) -> list[dict]:
        return self.view.runs()

    def draw(self, runs: list[dict]) -> None:
        rows = []
        for run in runs:
            status = Text(run["status"], style=RUN_STATUS_STYLES.get(run["status"], ""))
            rows.append(Row(run["run_id"], [
                Text(run["run_id"]), Text(run["suite"]), f"{run['started_at']:%m-%d %H:%M}", status,
                f"{run['done']}/{run['saes_planned']}", str(run["failed"])],
                [run["run_id"], run["suite"], run["started_at"], run["status"], run["done"], run["failed"]]))
        self.query_one("#runs", KeyedTable).show(COLUMNS, rows)

    @on(DataTable.RowSelected, "#runs")
    def open_run(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        self.app.open("layers")  # type: ignore[attr-defined]
