"""The engine's entry point: jobs in, results out through a reporter.

Each model is loaded once; its jobs are grouped by training stream, trained together, scored
together, checkpointed, and reported one by one. A failure is confined to the jobs it touches:
a model that does not load fails its jobs, a bad layer fails that job, a diverged SAE fails
alone, and an error during a group's training or scoring fails that group.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Iterable
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.absorption import GroundTruth, WordActivations, absorption_metrics, collect_word_activations, \
    ground_truth_probe
from harness.checkpoint import save_sae
from harness.evaluate import evaluate
from harness.models import load_model, pick_device
from harness.train import train_group
from suite.catalog import ABSORPTION_METRICS
from suite.jobs import AbsorptionSettings, Job, JobReporter, JobResult


class AbsorptionCache:
    """First-letter word activations (one collection per model, all its layers at once) and
    ground-truth probes (one per layer), shared by every SAE of the model."""

    def __init__(self, lm, layers: list[int], progress: Progress):
        self.lm, self.layers, self.progress = lm, layers, progress
        self.words: dict[AbsorptionSettings, WordActivations] = {}
        self.truth: dict[tuple[AbsorptionSettings, int], GroundTruth] = {}

    def score(self, job: Job, sae) -> tuple[dict[str, float], str | None]:
        settings = job.absorption
        assert settings is not None
        if settings not in self.words:
            self.words[settings] = collect_word_activations(self.lm, self.layers, settings, self.progress)
        words = self.words[settings]
        if len(words.words) < 26 * 2:
            return {}, (f"only {len(words.words)} single-token alphabetic words tokenize as the first-letter "
                        f"template expects ({words.dropped} did not): too few to train letter probes")
        if (settings, job.layer) not in self.truth:
            self.truth[settings, job.layer] = ground_truth_probe(words, job.layer, settings)
        return absorption_metrics(sae, words, self.truth[settings, job.layer], job.layer, settings)


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ("out of GPU memory: lower train.batch_size or the number of layers/SAEs per model "
                f"({str(exc).splitlines()[0]})")
    return f"{type(exc).__name__}: {exc}"


def _by_model(jobs: Iterable[Job]) -> dict:
    grouped: dict = {}
    for job in jobs:
        grouped.setdefault(job.model, {}).setdefault(job.train, []).append(job)
    return grouped


def run_jobs(jobs: list[Job], reporter: JobReporter, checkpoint_root: Path, device: str = "auto",
             console: Console | None = None) -> None:
    torch_device = pick_device(device)
    with _progress(console) as progress:
        for model_ref, streams in _by_model(jobs).items():
            model_jobs = [job for group in streams.values() for job in group]
            try:
                lm = load_model(model_ref, torch_device, progress)
            except Exception as exc:  # every job of this model fails with the same reason
                for job in model_jobs:
                    reporter.job_failed(job, _error_text(exc))
                continue
            absorption_layers = sorted({job.layer for job in model_jobs if job.absorption
                                        and job.layer < len(lm.layers)})
            cache = AbsorptionCache(lm, absorption_layers, progress) if absorption_layers else None
            for train, group in streams.items():
                runnable = []
                for job in group:
                    if job.layer >= len(lm.layers):
                        reporter.job_failed(job, f"layer {job.layer} does not exist: {model_ref.id} has "
                                                 f"{len(lm.layers)} layers (0..{len(lm.layers) - 1})")
                    else:
                        runnable.append(job)
                if runnable:
                    _run_group(lm, train, runnable, reporter, checkpoint_root, progress, cache)
            del lm
            gc.collect()
            if torch_device.type == "cuda":
                torch.cuda.empty_cache()


def _run_group(lm, train, jobs: list[Job], reporter: JobReporter, checkpoint_root: Path,
               progress: Progress, absorption: AbsorptionCache | None) -> None:
    for job in jobs:
        reporter.job_started(job)
    try:
        training = train_group(lm, train, jobs, reporter, progress)
        trained = [t for t in training.trainers if not t.failure]
        for trainer in training.trainers:
            if trainer.failure:
                reporter.job_failed(trainer.job, trainer.failure)
        if not trained:
            return
        scores, intervals = evaluate(lm, {t.job.key: (t.job.layer, t.sae) for t in trained}, jobs[0].evals,
                          train.ctx_len, train.batch_size, progress)
        notes: dict[str, dict[str, str]] = {t.job.key: {} for t in trained}
        for trainer in trained:
            if absorption is None or trainer.job.absorption is None:
                continue
            values, reason = absorption.score(trainer.job, trainer.sae)
            for per_eval in scores[trainer.job.key].values():
                per_eval.update(values)
            if reason:
                notes[trainer.job.key] = {metric: reason for metric in ABSORPTION_METRICS}
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        detail = _error_text(exc)
        if not isinstance(exc, (torch.cuda.OutOfMemoryError, OSError)):
            detail += "\n" + traceback.format_exc(limit=-3)
        for job in jobs:
            reporter.job_failed(job, detail)
        return
    for trainer in trained:
        job = trainer.job
        path = save_sae(trainer.sae, job, checkpoint_root / job.job_id)
        reporter.job_finished(job, JobResult(
            metrics=scores[job.key], intervals=intervals[job.key], train_seconds=training.seconds,
            tokens_per_second=training.tokens_per_second, checkpoint_path=str(path), notes=notes[job.key],
        ))
