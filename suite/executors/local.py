"""The default executor: the engine in this process, model after model on one device."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from suite.jobs import Job, JobReporter


class LocalExecutor:
    name = "local"

    def open(self, device: str) -> None:
        pass

    def run(self, jobs: list[Job], reporter: JobReporter, checkpoint_root: Path, device: str,
            console: Console | None) -> None:
        from harness.engine import run_jobs  # the suite drives the harness only from `run`

        run_jobs(jobs, reporter, checkpoint_root, device, console)

    def close(self) -> None:
        pass
