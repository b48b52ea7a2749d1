"""How a result was computed, stamped on it before it leaves the engine: the dtype the model's
weights were in and the process's torch intra-op threads. One place for it, whichever code path
(training, import, each eval) made the result, and whichever executor ran the engine."""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.models import LoadedModel
from suite.jobs import Job, JobReporter, ScoreResult, ScoreTask, TrainLogRow, TrainResult


class StampingReporter:
    """A JobReporter that adds `loaded_dtype` and `threads` to every result it passes on."""

    def __init__(self, inner: JobReporter, lm: LoadedModel):
        self.inner = inner
        self.loaded_dtype = lm.loaded_dtype

    def __getattr__(self, name: str):  # anything else a reporter offers passes straight through
        return getattr(self.inner, name)

    def _facts(self) -> dict:
        return {"loaded_dtype": self.loaded_dtype, "threads": torch.get_num_threads()}

    def sae_started(self, job: Job) -> None:
        self.inner.sae_started(job)

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        self.inner.train_log(job, rows)

    def sae_failed(self, job: Job, error: str) -> None:
        self.inner.sae_failed(job, error)

    def sae_ready(self, job: Job, result: TrainResult) -> None:
        self.inner.sae_ready(job, replace(result, **self._facts()))

    def score_finished(self, job: Job, task: ScoreTask, result: ScoreResult) -> None:
        self.inner.score_finished(job, task, replace(result, **self._facts()))

    def score_failed(self, job: Job, task: ScoreTask, error: str) -> None:
        self.inner.score_failed(job, task, error)
