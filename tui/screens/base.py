"""What every data screen shares: header and footer, refresh (on `r`, every few seconds while
shown, and on coming back to it) that never crashes, back, help and quit."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.view import StoreView

REFRESH_SECONDS = 5.0


class DataScreen(Screen):
    """Subclasses yield their widgets from `body`, read in `fetch` and show in `draw`."""

    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_REFRESH = True  # reload every REFRESH_SECONDS while this screen is shown
    _failed_last = False  # the previous refresh failed
    _last_data: Any = None  # what is shown, to skip redrawing an unchanged file
    _fetching = False  # a refresh worker is reading
    _generation = 0  # counts refreshes asked for on the app's thread (e, n, r, a pick)

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
        """Read in a worker thread, draw on the app's thread only if the data changed: a large
        file never stalls scrolling, and an idle file costs the screen nothing."""
        # a screen under another one waits until it is shown again; one read at a time, with a
        # pause between reads, so a run's writes always find the file free
        if self.is_current and not self._fetching:
            self._fetching = True
            self.run_worker(lambda: self._fetch_in_thread(self._generation), thread=True, group="refresh")

    def _fetch_in_thread(self, generation: int) -> None:
        try:
            data = self.fetch()
        except Exception as exc:  # noqa: BLE001 - shown as a notice by the app's thread
            self.app.call_from_thread(self._failed, exc)
            return
        finally:
            self._fetching = False
        if data != self._last_data:
            self.app.call_from_thread(self._show, data, generation)
        else:
            self.app.call_from_thread(self._succeeded)

    def action_refresh(self) -> None:
        """Reload now; whatever the file does meanwhile (rows appearing, a run finishing, a lock,
        a half-migrated or vanished file) shows as a one-line notice and the last good content."""
        self._generation += 1  # a worker's read that started before this one is not drawn
        try:
            data = self.fetch()
        except Exception as exc:  # noqa: BLE001 - a refresh must never take the app down
            self._failed(exc)
            return
        self._show(data)

    def _show(self, data: Any, generation: int | None = None) -> None:
        if generation is not None and generation != self._generation:
            return
        try:
            self.draw(data)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return
        self._last_data = data
        self._succeeded()

    def _succeeded(self) -> None:
        self._failed_last = False
        self.sub_title = f"{self.view.path.name} · {self.view.source}"

    def _failed(self, exc: BaseException) -> None:
        """A read of a snapshot copy (taken because a run held the file past the wait) may catch
        the file mid-write; that failure is said in the header only, and the next refresh reads
        again. Only a second failure in a row is a notice."""
        first = " ".join(str(exc).split()) or type(exc).__name__
        if self.view.store.last_read_was_snapshot and not self._failed_last:
            self._failed_last = True
            self.sub_title = f"{self.view.path.name} · a run is writing: last good read shown"
            return
        self._failed_last = True
        self.notify(f"refresh failed, showing the last good read: {first}", severity="error", markup=False)

    def fetch(self) -> Any:
        """Read what the screen shows (any thread; one consistent read of the file)."""
        return None

    def draw(self, data: Any) -> None:
        """Show `data` (the app's thread)."""

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
