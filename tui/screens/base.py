"""What every data screen shares: header and footer, refresh (on `r`, every few seconds while
shown, and on coming back to it) that never crashes, back, help and quit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.view import StoreView

REFRESH_SECONDS = 5.0


class DataScreen(Screen):
    """Subclasses yield their widgets from `body` and fill them in `load`."""

    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_REFRESH = True  # reload every REFRESH_SECONDS while this screen is shown
    _failed_last = False  # the previous refresh failed

    @property
    def view(self) -> StoreView:
        return self.app.view  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.action_refresh()
        if self.AUTO_REFRESH:
            self.set_interval(REFRESH_SECONDS, self.auto_refresh)

    def on_screen_suspend(self) -> None:
        self._was_covered = True

    def on_screen_resume(self) -> None:
        if getattr(self, "_was_covered", False) and self.AUTO_REFRESH:  # back from a screen above
            self._was_covered = False
            self.action_refresh()

    def auto_refresh(self) -> None:
        if self.is_current:  # a screen under another one waits until it is shown again
            self.action_refresh()

    def action_refresh(self) -> None:
        """Reload; whatever the file does meanwhile (rows appearing, a run finishing, a lock, a
        half-migrated or vanished file) shows as a one-line notice and the last good content.

        A read of a snapshot copy (taken because a run held the file past the wait) may catch
        the file mid-write; that failure is said in the header only, and the next refresh
        reads again. Only a second failure in a row is a notice."""
        try:
            self.load()
        except Exception as exc:  # noqa: BLE001 - a refresh must never take the app down
            first = " ".join(str(exc).split()) or type(exc).__name__
            if self.view.store.last_read_was_snapshot and not self._failed_last:
                self._failed_last = True
                self.sub_title = f"{self.view.path.name} · a run is writing: last good read shown"
                return
            self._failed_last = True
            self.notify(f"refresh failed, showing the last good read: {first}", severity="error", markup=False)
            return
        self._failed_last = False
        self.sub_title = f"{self.view.path.name} · {self.view.source}"

    def load(self) -> None:
        pass

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
