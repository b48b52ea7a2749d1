"""`sae-bench tui`: browse runs, layer tables, SAEs and model comparisons of a results file.

This module only wires the app: which screens exist (one module each under `tui/screens/`),
the keys that open them, the help built from those keys, and opening a results file. Screens
read through `tui.view.StoreView` (read-only, one consistent read per refresh, a snapshot copy
if another process holds the file) and build their tables from `suite.report`, so they show
the same numbers, health verdicts and comparisons as `sae-bench report`.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from suite.store import StoreError
from suite.store.recovery import reconcile_if_idle
from tui.keys import KeyHelp, describe
from tui.screens.base import DataScreen
from tui.screens.compare import CompareScreen
from tui.screens.help import HelpScreen
from tui.screens.job import JobScreen
from tui.screens.layers import LayersScreen
from tui.screens.message import MessageScreen
from tui.screens.runs import RunsScreen
from tui.screens.sql import SqlScreen
from tui.styles import CSS
from tui.view import StoreView
from tui.widgets.table import KeyedTable

__all__ = ["CompareScreen", "HelpScreen", "JobScreen", "LayersScreen", "MessageScreen", "RunsScreen",
           "SaeBenchApp", "SqlScreen", "run_tui"]

# name -> (screen, title in the help); `App.open(name, *args)` pushes a fresh one
SCREEN_REGISTRY: dict[str, tuple[type[Screen], str]] = {
    "runs": (RunsScreen, "Runs (first screen)"),
    "layers": (LayersScreen, "Layers"),
    "job": (JobScreen, "SAE"),
    "compare": (CompareScreen, "Compare"),
    "sql": (SqlScreen, "SQL console"),
}


class SaeBenchApp(App):
    TITLE = "sae-bench"
    CSS = CSS
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, db: Path | None = None, search_dir: Path = Path("results")):
        super().__init__()
        self.db = db
        self.search_dir = search_dir
        self.view: StoreView | None = None

    # ------------------------------------------------------------------ screens and keys

    def action_open(self, name: str, *args: str) -> None:
        self.open(name, *args)

    def open(self, name: str, *args: str) -> None:
        screen_class, _ = SCREEN_REGISTRY[name]
        self.push_screen(screen_class(*args))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def help_sections(self) -> list[tuple[str, str, list[KeyHelp]]]:
        """(title, screen name, key lines): keys every screen has, then each screen's own, then
        the tables' and the app's."""
        sections = [("Every screen", "", describe(DataScreen))]
        for name, (screen_class, title) in SCREEN_REGISTRY.items():
            own = describe(screen_class, skip=DataScreen)
            for label, widget_class in getattr(screen_class, "WIDGET_KEYS", []):
                own += [KeyHelp(line.keys, f"{label}: {line.description}")
                        for line in describe(widget_class, skip=Widget)]
            sections.append((title, name, own))
        sections.append(("Tables (the focused one)", "tables", describe(KeyedTable, skip=Widget)))
        anywhere = describe(type(self))
        if self.ENABLE_COMMAND_PALETTE:
            anywhere.append(KeyHelp(self.COMMAND_PALETTE_BINDING.replace("ctrl+", "^"), "Command palette"))
        sections.append(("Anywhere", "app", anywhere))
        return sections

    # ------------------------------------------------------------------ opening a results file

    def on_mount(self) -> None:
        if self.db is not None:
            self.open_db(self.db)
            return
        found = sorted(self.search_dir.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True)
        if len(found) == 1:
            self.open_db(found[0])
        elif found:
            self.push_screen(MessageScreen(f"Results files under {self.search_dir}/ — pick one:", found))
        else:
            self.push_screen(MessageScreen(
                f"No results yet: no .duckdb file under {self.search_dir}/.\n\n"
                "Run `sae-bench run specs/demo.toml`, or open a file with `sae-bench tui PATH`."))

    def open_db(self, path: Path) -> None:
        view = StoreView(path)
        try:
            view.store.check_schema()
            reconcile_if_idle(path)  # a killed run's rows read `interrupted`, not `running` forever
            has_runs = bool(view.runs())
        except StoreError as exc:
            self.push_screen(MessageScreen(f"{exc}\n\nRun a spec into it with `sae-bench run SPEC --db {path}`."))
            return
        self.view = view
        if not has_runs:
            self.push_screen(MessageScreen(f"{path} has no runs yet."))
            return
        self.open("runs")


def run_tui(db: str | None) -> int:
    SaeBenchApp(Path(db) if db else None).run()
    return 0
