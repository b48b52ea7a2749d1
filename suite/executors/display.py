"""The driver's terminal during a Ray run: one line per group's current bar (mirrored from its
worker), an overall count of groups, and a line when a group starts or is lost. In a pipe or CI
log the bars are plain lines (harness.progress.LineProgress): each phase's start and end, and
every group's unfinished phases every `SAE_BENCH_PROGRESS_SECONDS` (default 30)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

from harness.progress import LineProgress
from suite.executors.events import GroupStarted, ProgressUpdate


class GroupsDisplay:
    def __init__(self, console: Console | None, labels: list[str]):
        self.console = console or Console()
        self.labels = labels
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}", style="progress.description", markup=False,
                           table_column=Column(overflow="fold")),
                BarColumn(bar_width=None, table_column=Column(ratio=1)),  # the bar yields room at 80 columns
                TextColumn("{task.completed:,.0f}/{task.total:,.0f}", table_column=Column(no_wrap=True)),
                TimeElapsedColumn(), console=self.console, transient=False, expand=True)
        else:  # a pipe or CI log: plain lines, every group's phase (they run side by side)
            self.progress = LineProgress(self.console, sequential=False)
        self.overall = self.progress.add_task(f"model groups on Ray ({len(labels)})", total=len(labels))
        self.bars: dict[tuple[int, int], TaskID] = {}

    def __enter__(self) -> "GroupsDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, event: GroupStarted) -> None:
        self.progress.console.print(
            f"[dim]group {event.group + 1}: {escape(self.labels[event.group])} on {escape(event.host)} "
            f"(pid {event.pid}, {escape(event.device)})[/dim]", highlight=False)

    def update(self, event: ProgressUpdate) -> None:
        description = f"[{event.group + 1}] {event.description}"
        key = (event.group, event.task_id)
        if key not in self.bars:
            self._end_group(event.group)  # its worker moved on to a new phase
            self.bars[key] = self.progress.add_task(description, total=event.total, completed=event.completed)
        else:
            self.progress.update(self.bars[key], description=description, total=event.total,
                                 completed=event.completed)

    def finished(self, group: int) -> None:
        self._end_group(group)
        self.progress.advance(self.overall)

    def _end_group(self, group: int) -> None:
        """Progress lines stop naming a group's phases that ended short of their total (an eval
        whose dataset ran out): the bars on a terminal keep them as they are."""
        if isinstance(self.progress, LineProgress):
            for (bar_group, _), task_id in self.bars.items():
                if bar_group == group:
                    self.progress.end(task_id)

    def lost(self, group: int, reason: str, count: int) -> None:
        self.progress.console.print(
            f"[red]lost[/red] group {group + 1} ({escape(self.labels[group])}): {escape(reason.splitlines()[0])}; "
            f"{count} SAE(s)/score(s) marked failed", highlight=False)
        self.finished(group)
