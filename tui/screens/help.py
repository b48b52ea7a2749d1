"""`?`: every key of every screen, generated from the bindings (tui.keys), in a scrollable box."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import MOUSE, KeyHelp

HEALTH = ("Health n/N: gates passed on every eval / gates that apply. Green: all pass; yellow: at "
          "least half; red: most failed.")


def section(title: str, lines: list[KeyHelp]) -> Table:
    table = Table(title=Text(title, style="bold"), title_justify="left", show_header=False, box=None,
                  padding=(0, 1), expand=True)
    table.add_column("keys", style="bold cyan", no_wrap=True)
    table.add_column("what", ratio=1)
    if not lines:
        table.add_row("", Text("only the keys of every screen", style="dim"))
    for line in lines:
        table.add_row(Text(line.keys), Text(line.description))
    return table


class HelpScreen(ModalScreen):
    """Sections come from the app (`App.help_sections`): shared keys, each screen's own, tables'."""

    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close help")]

    def compose(self) -> ComposeResult:
        sections = self.app.help_sections()  # type: ignore[attr-defined]
        parts = [Text("sae-bench tui: keys (esc, ? or q closes; arrows scroll)\n", style="bold")]
        for title, name, lines in sections:
            mouse = [KeyHelp(k, d) for k, d in MOUSE.get(name, [])]
            parts.append(section(title, lines + mouse))
            parts.append(Text(""))
        parts.append(Text(HEALTH))
        with VerticalScroll(id="help-box"):
            yield Static(Group(*parts), id="help")
