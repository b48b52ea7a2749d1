"""What an executor is: it runs the harness on a list of jobs and hands every result to one
reporter in the calling process, which alone writes the store.

`local` runs the engine in this process; `ray` runs each model group as a Ray task and relays
its results back. Either way the runner sees the same `JobReporter` calls, so resume, gating and
failure handling do not depend on where the work ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from rich.console import Console

from suite.jobs import Job, JobReporter


class ExecutorError(Exception):
    """The executor cannot run here (Ray missing, no cluster at the address, a device no node
    has): one line for the user; nothing has been written for the jobs it names."""


class Executor(Protocol):
    name: str

    def open(self, device: str) -> None:
        """Connect to where the work runs and check it can run on `device`; raises ExecutorError.
        Called only when there is work, before the run is recorded."""

    def run(self, jobs: list[Job], reporter: JobReporter, checkpoint_root: Path, device: str,
            console: Console | None) -> None:
        """Train and score `jobs`, reporting each result as it lands; KeyboardInterrupt propagates."""

    def close(self) -> None:
        """Release what `open` took; safe to call when `open` was not."""


def model_groups(jobs: Iterable[Job]) -> list[list[Job]]:
    """Jobs by `Job.group_key` (one model and one training stream, trained from one forward pass;
    SAEs that only need scores form one group per model), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.group_key, []).append(job)
    return list(groups.values())


def describe_group(group: list[Job]) -> str:
    """e.g. `base (builtin:demo-base), layers 1,3,5, 3 SAE(s) to train`."""
    model = group[0].model
    layers = ",".join(str(layer) for layer in sorted({job.layer for job in group}))
    training = sum(job.train for job in group)
    what = f"{training} SAE(s) to train" if training else f"{len(group)} SAE(s) to score"
    name = f"{model.name} ({model.id})" if model.name else model.id
    return f"{name}, layers {layers}, {what}"
