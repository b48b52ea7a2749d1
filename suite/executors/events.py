"""What a remote group sends its driver: one plain, picklable dataclass per `JobReporter` call,
plus where the group runs and how far its progress bars are.

A worker reports through `RelayReporter`, which turns each call into an event and hands it to a
sink (a Ray queue); the driver replays each event on its own reporter with `Event.apply`, so the
store is written by the driver alone and through the same calls the local executor makes. Jobs
travel by key: the driver holds the `Job` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from suite.jobs import Job, JobReporter, ScoreResult, ScoreTask, TrainLogRow, TrainResult


@dataclass
class Event:
    group: int  # index of the model group in the driver's list

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        """Replay on the driver's reporter; events that carry no result do nothing here."""


@dataclass
class GroupStarted(Event):
    host: str = ""
    pid: int = 0
    device: str = ""


@dataclass
class ProgressUpdate(Event):
    task_id: int = 0
    description: str = ""
    completed: float = 0.0
    total: float | None = None


@dataclass
class SaeStarted(Event):
    job_key: str = ""

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None
        reporter.sae_started(job)


@dataclass
class TrainLog(Event):
    job_key: str = ""
    rows: list[TrainLogRow] = field(default_factory=list)

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None
        reporter.train_log(job, self.rows)


@dataclass
class SaeFailed(Event):
    job_key: str = ""
    error: str = ""

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None
        reporter.sae_failed(job, self.error)


@dataclass
class SaeReady(Event):
    job_key: str = ""
    result: TrainResult | None = None

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None and self.result is not None
        reporter.sae_ready(job, self.result)


@dataclass
class ScoreFinished(Event):
    job_key: str = ""
    task: ScoreTask | None = None
    result: ScoreResult | None = None

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None and self.task is not None and self.result is not None
        reporter.score_finished(job, self.task, self.result)


@dataclass
class ScoreFailed(Event):
    job_key: str = ""
    task: ScoreTask | None = None
    error: str = ""

    def apply(self, reporter: JobReporter, job: Job | None) -> None:
        assert job is not None and self.task is not None
        reporter.score_failed(job, self.task, self.error)


class RelayReporter:
    """The worker's `JobReporter`: every call becomes an event for the driver."""

    def __init__(self, group: int, send: Callable[[Event], None]):
        self.group, self.send = group, send

    def sae_started(self, job: Job) -> None:
        self.send(SaeStarted(self.group, job.key))

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        self.send(TrainLog(self.group, job.key, list(rows)))

    def sae_failed(self, job: Job, error: str) -> None:
        self.send(SaeFailed(self.group, job.key, error))

    def sae_ready(self, job: Job, result: TrainResult) -> None:
        self.send(SaeReady(self.group, job.key, result))

    def score_finished(self, job: Job, task: ScoreTask, result: ScoreResult) -> None:
        self.send(ScoreFinished(self.group, job.key, task, result))

    def score_failed(self, job: Job, task: ScoreTask, error: str) -> None:
        self.send(ScoreFailed(self.group, job.key, task, error))


class Ledger:
    """The driver's record of what each job has finished, so a group that is lost (its worker
    died, its task raised) fails exactly what it left unfinished, as the engine fails a model
    that does not load: the SAE where it was to be made, otherwise its missing scores."""

    def __init__(self, reporter: JobReporter):
        self.reporter = reporter
        self.made: set[str] = set()  # SAE ready or failed
        self.failed: set[str] = set()
        self.scored: set[tuple[str, str]] = set()  # (job key, eval name) finished or failed

    def apply(self, event: Event, job: Job | None) -> None:
        event.apply(self.reporter, job)
        key = getattr(event, "job_key", "")
        if isinstance(event, (SaeReady, SaeFailed)):
            self.made.add(key)
            if isinstance(event, SaeFailed):
                self.failed.add(key)
        elif isinstance(event, (ScoreFinished, ScoreFailed)):
            assert event.task is not None
            self.scored.add((key, event.task.name))

    def lose(self, jobs: list[Job], reason: str) -> int:
        """Fail what `jobs` left unfinished with `reason`; returns how many SAEs and scores."""
        lost = 0
        for job in jobs:
            if job.key in self.failed:
                continue
            makes = job.train or (job.sae.source is not None and job.checkpoint is None)
            if makes and job.key not in self.made:
                self.reporter.sae_failed(job, reason)
                self.made.add(job.key)
                self.failed.add(job.key)
                lost += 1
                continue
            for task in job.scores:
                if (job.key, task.name) not in self.scored:
                    self.reporter.score_failed(job, task, reason)
                    self.scored.add((job.key, task.name))
                    lost += 1
        return lost
