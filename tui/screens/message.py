"""Shown instead of a traceback: no file, an unreadable or empty file, or several to choose from."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static


class MessageScreen(Screen):
    """Enter opens the file under the cursor, when there is a list."""

    BINDINGS = [Binding("question_mark", "app.help", "Help", key_display="?"), Binding("q", "app.quit", "Quit")]

    def __init__(self, message: str, choices: list[Path] | None = None):
        super().__init__()
        self.message, self.choices = message, choices or []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.message, id="message", markup=False)
        if self.choices:
            yield OptionList(*[str(p) for p in self.choices], id="choices")
        yield Footer()

    @on(OptionList.OptionSelected, "#choices")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.app.open_db(self.choices[event.option_index])  # type: ignore[attr-defined]
