"""Progress for consoles that are not terminals (pipes, CI logs): plain lines instead of bars.

Rich's live bars draw nothing useful into a pipe (a run on a real model was silent for ten
minutes in a CI log, then printed its last frame). `LineProgress` is a rich `Progress` (the
engine drives it exactly like the bars) that prints one line when a phase starts (a task is
added: model load, a training stream, each eval), one when it finishes, and every `interval`
seconds a line per unfinished phase with done/total, rate and ETA, from a timer thread, so a
long phase that reports nothing is never silent either:

    [0:00:31] training 6 SAE(s) on base, layers 4,10,16: 1,228,800/20,000,000 (6%), 39,501/s, ETA 0:07:55

The interval is `SAE_BENCH_PROGRESS_SECONDS` (default 30), or the `interval` argument.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.progress import Progress, Task, TaskID
from rich.text import Text

INTERVAL_ENV = "SAE_BENCH_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between progress lines: `$SAE_BENCH_PROGRESS_SECONDS`, default 30."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _clock(seconds: float | None) -> str:
    return str(timedelta(seconds=int(seconds))) if seconds is not None else "?"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _rate(per_second: float) -> str:
    """Per second, with a decimal where a whole number would read 0 or 1 (eval batches)."""
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.1f}/s"


class LineProgress(Progress):
    """A Progress that prints lines (phase start, phase end, every `interval` seconds)."""

    def __init__(self, console: Console | None = None, interval: float | None = None, sequential: bool = True):
        """`sequential`: phases run one after another (the local engine), so the timed line names
        the newest unfinished one only (an eval whose dataset ran out never reaches its total; a
        model build runs inside its model's loading); the Ray driver's groups run side by side
        and pass False: a line for every unfinished one."""
        super().__init__(console=console, disable=True)  # no live display; the task book-keeping stays
        self.interval = interval if interval is not None else progress_interval()
        self.sequential = sequential
        self._began = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._finished: set[TaskID] = set()
        self._ended: set[TaskID] = set()
        self._last_phase = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="sae-bench-progress", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    # ------------------------------------------------------------------ the engine's calls

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._last_phase = description
        size = f" ({_count(total)} to do)" if total is not None and total > 1 else ""
        self._line(description, f"started{size}")
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._maybe_finished(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_finished(task_id)

    def end(self, task_id: TaskID) -> None:
        """Stop reporting a phase that will not reach its total (its worker moved on)."""
        with self._lock:
            self._ended.add(task_id)

    # ------------------------------------------------------------------ lines

    def _maybe_finished(self, task_id: TaskID) -> None:
        with self._lock:
            task = self._tasks[task_id]
            if not task.finished or task_id in self._finished:
                return
            self._finished.add(task_id)
            elapsed = task.finished_time or task.elapsed or 0.0
            if task.completed > 1:
                rate = f", {_rate(task.completed / elapsed)}" if elapsed > 0 else ""
                text = f"done, {_count(task.completed)} in {_clock(elapsed)}{rate}"
            else:
                text = f"done in {_clock(elapsed)}"
        self._line(task.description, text)

    @staticmethod
    def _done(task: Task) -> str:
        done = _count(task.completed)
        if task.total:
            done += f"/{_count(task.total)} ({100 * task.completed / task.total:.0f}%)"
        return done

    def _status(self, task: Task) -> tuple[str, str]:
        if task.total is not None and task.total <= 1:  # a step without a count (loading a model)
            return task.description, f"working, {_clock(task.elapsed)} so far"
        speed = task.speed
        rate = f", {_rate(speed)}" if speed else ""
        eta = f", ETA {_clock(task.time_remaining)}" if task.total and speed else ""
        return task.description, f"{self._done(task)}{rate}{eta}"

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                active = [task for task in self._tasks.values() if not task.finished and task.id not in self._ended]
                if self.sequential:
                    active = active[-1:]
                lines = [self._status(task) for task in active]
            if not lines:
                lines = [(f"working (after {self._last_phase})", "") if self._last_phase else ("working", "")]
            for phase, state in lines:
                self._line(phase, state)

    def _line(self, phase: str, state: str) -> None:
        """`[elapsed] phase: state` on one line, or the state on a second, indented line where
        one would pass the console's width (a CI log keeps whole numbers on each line)."""
        stamp = f"[{_clock(time.monotonic() - self._began)}] "
        text = f"{stamp}{phase}: {state}" if state else f"{stamp}{phase}"
        if state and cell_len(text) > self.console.width:
            text = f"{stamp}{phase}:\n{' ' * len(stamp)}{state}"
        self.console.print(Text(text), highlight=False)


def make_progress(console: Console | None, bars: Progress | None = None) -> Progress:
    """`LineProgress` when the console is not a terminal; else `bars` (rich's live bars)."""
    console = console or Console()
    if console.is_terminal and bars is not None:
        return bars
    return LineProgress(console)
