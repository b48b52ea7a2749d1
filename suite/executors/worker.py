"""The body of one Ray task: one model group through the engine, every result relayed to the
driver. It writes checkpoints (to the shared directory) and nothing else: no store, no terminal.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from suite.executors.events import Event, GroupStarted, ProgressUpdate, RelayReporter
from suite.jobs import Job

SHARED_MARK = ".sae-bench-shared-"  # + a token the driver writes; workers must read it back
PROGRESS_SECONDS = 0.5  # a bar's state reaches the driver at most this often (and when it ends)


class NotSharedError(RuntimeError):
    pass


def mark_shared(root: Path, token: str) -> Path:
    """Driver side: a file workers look for to prove they see the same checkpoint directory."""
    root.mkdir(parents=True, exist_ok=True)
    mark = root / (SHARED_MARK + token)
    mark.write_text(token)
    return mark


def check_shared(root: Path, token: str) -> None:
    mark = root / (SHARED_MARK + token)
    try:
        seen = mark.read_text()
    except OSError:
        seen = ""
    if seen != token:
        raise NotSharedError(
            f"checkpoint directory {root} on {platform.node()} is not the driver's (the driver's marker file "
            f"{mark.name} is not there): set [suite] checkpoints to a directory every node mounts at the same "
            "path (docs/cluster.md)")


class RelayProgress(Progress):
    """A Progress that draws nothing and forwards its bars to the driver, throttled."""

    def __init__(self, group: int, send: Callable[[Event], None]):
        super().__init__(disable=True)
        self.group, self.send = group, send
        self._sent: dict[TaskID, float] = {}

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._forward(task_id, force=True)
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._forward(task_id)

    def _forward(self, task_id: TaskID, force: bool = False) -> None:
        task = self._tasks[task_id]
        now = time.monotonic()
        finished = task.total is not None and task.completed >= task.total
        if force or finished or now - self._sent.get(task_id, 0.0) >= PROGRESS_SECONDS:
            self._sent[task_id] = now
            self.send(ProgressUpdate(self.group, int(task_id), task.description, task.completed, task.total))


def run_group(group: int, jobs: list[Job], checkpoint_root: str, token: str, device: str, threads: int,
              queue: Any) -> int:
    """Run one group with `threads` torch threads (the CPUs its task holds: CPU results depend on
    the thread count, so it is set, not left to the environment); returns how many events it
    sent. Raises only what the engine does not confine to a job (a checkpoint directory this node
    does not share, a bug)."""
    import torch

    from harness.engine import run_jobs
    from harness.models import pick_device

    torch.set_num_threads(threads)
    sent = 0

    def send(event: Event) -> None:
        nonlocal sent
        queue.put(event)  # blocks until the queue actor holds it: nothing is in flight at return
        sent += 1

    root = Path(checkpoint_root)
    check_shared(root, token)
    send(GroupStarted(group, platform.node(), os.getpid(), str(pick_device(device))))
    with RelayProgress(group, send) as progress:
        run_jobs(jobs, RelayReporter(group, send), root, device, progress=progress)
    return sent
