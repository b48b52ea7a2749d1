"""The engine's entry point: jobs in, results out through a reporter.

Each model is loaded once. Its SAEs to train are grouped by training stream and trained together
from shared forward passes, then checkpointed and reported ready; SAEs trained earlier are loaded
from their checkpoints and imported ones from their directories. Then every SAE is scored on the
evals it lacks: each dataset eval and each labelled probing dataset once for all SAEs of the model
that need it, absorption per SAE.
A failure is confined to what it touches: a model that does not load fails its jobs, a missing
layer or hook fails that SAE, a diverged SAE fails alone, a failing eval fails that eval's scores.
"""

from __future__ import annotations

import errno
import gc
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column

from harness.absorption import AbsorptionEval
from harness.activations import HookSite, hook_name, site_module
from harness.checkpoint import files_sha256, load_sae, save_sae
from harness.evals.core import score_core
from harness.evals.sparse_probing import score_sparse_probing
from harness.models import LoadedModel, load_model, pick_device
from harness.progress import make_progress
from harness.run_facts import StampingReporter
from harness.saes import SparseAutoencoder
from harness.train import train_group
from suite.catalog import ABSORPTION_METRICS
from suite.jobs import (
    Job,
    JobReporter,
    LetterRow,
    ModelRef,
    ScoreResult,
    ScoreTask,
    TrainResult,
)


def _progress(console: Console | None) -> Progress:
    """Live bars on a terminal; plain lines in a pipe or CI log (harness.progress)."""
    return make_progress(console, Progress(  # descriptions name models and evals: text, never markup
        TextColumn("{task.description}", style="progress.description", markup=False,
                   table_column=Column(overflow="fold")),
        BarColumn(bar_width=None, table_column=Column(ratio=1)),  # the bar yields room at 80 columns
        TextColumn("{task.completed:,}/{task.total:,}", table_column=Column(no_wrap=True)),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False, expand=True,
    ))


def error_text(exc: BaseException) -> str:
    """One line a user can act on."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ("out of GPU memory: lower train.batch_size, the eval batch_size, or the number of SAEs per model "
                f"({first})")
    if isinstance(exc, MemoryError):
        return ("out of memory: lower train.batch_size, buffer_batches, latents or the number of SAEs per model"
                + (f" ({first})" if first else ""))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"disk full{where} ({exc.strerror}): free space and run again"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {exc.filename or 'a file'}: {exc.strerror}"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _detail(exc: BaseException) -> str:
    """One line for the user, then the innermost frames for a bug report."""
    text = error_text(exc)
    if not isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError, OSError)):
        text += "\n" + traceback.format_exc(limit=-3)
    return text


def _by_model(jobs: Iterable[Job]) -> dict[ModelRef, list[Job]]:
    grouped: dict[ModelRef, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.model, []).append(job)
    return grouped


def run_jobs(jobs: list[Job], reporter: JobReporter, checkpoint_root: Path, device: str = "auto",
             console: Console | None = None, progress: Progress | None = None) -> None:
    """`progress`: where bars go (a Ray worker relays them); default, a live display on `console`."""
    try:
        torch_device = pick_device(device)
    except Exception as exc:  # e.g. cuda requested on a machine without it: every job fails, with why
        for job in jobs:
            _fail_job(reporter, job, error_text(exc))
        return
    with progress or _progress(console) as progress:
        for model_ref, model_jobs in _by_model(jobs).items():
            loading = progress.add_task(f"loading {model_ref.name or model_ref.id}", total=1)  # a phase of its own
            try:
                lm = load_model(model_ref, torch_device, progress)
            except Exception as exc:  # every job of this model fails with the same reason
                for job in model_jobs:
                    _fail_job(reporter, job, error_text(exc))
                continue
            finally:
                progress.update(loading, completed=1)
            ModelRun(lm, reporter, checkpoint_root, progress).run(model_jobs)
            del lm
            gc.collect()
            if torch_device.type == "cuda":
                torch.cuda.empty_cache()


def _fail_job(reporter: JobReporter, job: Job, error: str) -> None:
    """The SAE fails where it was to be made here; otherwise (it exists) its missing scores do."""
    if job.train or (job.sae.source is not None and job.checkpoint is None):
        reporter.sae_failed(job, error)
    else:
        for task in job.scores:
            reporter.score_failed(job, task, error)


class ModelRun:
    """Everything one loaded model does: train, load, score."""

    def __init__(self, lm: LoadedModel, reporter: JobReporter, checkpoint_root: Path, progress: Progress):
        self.lm, self.checkpoint_root, self.progress = lm, checkpoint_root, progress
        self.reporter = StampingReporter(reporter, lm)  # every result says its dtype and threads
        self.saes: dict[str, SparseAutoencoder] = {}  # sae key -> weights ready to score

    def run(self, jobs: list[Job]) -> None:
        runnable = [job for job in jobs if self._site_exists(job)]
        self._train([job for job in runnable if job.train])
        for job in runnable:
            if not job.train:
                self._load(job)
        ready = [job for job in runnable if job.key in self.saes]
        self._score_datasets(ready)
        self._score_absorption(ready)
        self._score_probing(ready)

    def _site_exists(self, job: Job) -> bool:
        depth = len(self.lm.layers)
        try:
            if job.layer >= depth:
                raise ValueError(f"layer {job.layer} does not exist: {self.lm.ref.id} has {depth} layers "
                                 f"(0..{depth - 1})")
            site_module(self.lm, HookSite(job.layer, job.sae.hook))
        except Exception as exc:
            _fail_job(self.reporter, job, str(exc))
            return False
        return True

    # ------------------------------------------------------------------ weights

    def _train(self, jobs: list[Job]) -> None:
        streams: dict = {}
        for job in jobs:
            streams.setdefault(job.sae.train, []).append(job)
        for train, group in streams.items():
            for job in group:
                self.reporter.sae_started(job)
            try:
                training = train_group(self.lm, train, group, self.reporter, self.progress)
            except Exception as exc:
                for job in group:
                    self.reporter.sae_failed(job, _detail(exc))
                continue
            for trainer in training.trainers:
                job = trainer.job
                if trainer.failure:
                    self.reporter.sae_failed(job, trainer.failure)
                    continue
                try:
                    name = hook_name(self.lm, HookSite(job.layer, job.sae.hook))
                    path = save_sae(trainer.sae, job, self.checkpoint_root / job.sae_id, name)
                    result = TrainResult(
                        checkpoint_path=str(path), d_model=self.lm.d_model, train_seconds=training.seconds,
                        tokens_per_second=training.tokens_per_second, weights_sha256=files_sha256(path),
                        model_sha=self.lm.weights_sha(), train_fingerprint=training.fingerprint,
                        device_name=self.lm.device_name, hook_name=name)
                except Exception as exc:
                    self.reporter.sae_failed(job, f"cannot write the checkpoint: {error_text(exc)}")
                    continue
                self.reporter.sae_ready(job, result)
                self.saes[job.key] = trainer.sae

    def _load(self, job: Job) -> None:
        try:
            if job.sae.source is not None:
                from harness.formats import import_sae

                first_time = job.checkpoint is None
                if first_time:
                    self.reporter.sae_started(job)
                sae, checkpoint = import_sae(job.sae.source, self.lm.device)
                if sae.d_in != self.lm.d_model:
                    raise ValueError(f"the SAE reads {sae.d_in}-dimensional activations but {self.lm.ref.id} has "
                                     f"d_model {self.lm.d_model}")
                if first_time:
                    settings = sae.settings
                    self.reporter.sae_ready(job, TrainResult(
                        checkpoint_path=checkpoint, d_model=sae.d_in, weights_sha256=job.sae.source.sha256,
                        model_sha=self.lm.weights_sha(), device_name=self.lm.device_name,
                        hook_name=hook_name(self.lm, HookSite(job.layer, job.sae.hook)), arch=sae.arch,
                        k=settings.k if "k" in settings.identity() else None, latents=sae.d_sae))
            else:
                assert job.checkpoint is not None
                sae = load_sae(job.checkpoint, self.lm.device)
        except Exception as exc:
            _fail_job(self.reporter, job, f"cannot load the SAE: {error_text(exc)}")
            return
        self.saes[job.key] = sae

    # ------------------------------------------------------------------ scores

    def _score_datasets(self, jobs: list[Job]) -> None:
        self._score_shared(jobs, "core", score_core)

    def _score_probing(self, jobs: list[Job]) -> None:
        self._score_shared(jobs, "sparse_probing", score_sparse_probing)

    def _score_shared(self, jobs: list[Job], kind: str, scorer: Callable[..., dict]) -> None:
        """Each eval's settings once for all SAEs of the model that need them, so one forward
        serves them all (core: the clean/ablated passes; sparse probing: one forward per text)."""
        by_settings: dict[object, list[Job]] = {}
        for job in jobs:
            for task in job.scores:
                if task.kind == kind:
                    by_settings.setdefault(task.settings, []).append(job)
        for settings, needing in by_settings.items():
            task = ScoreTask(kind, settings)
            saes = {job.key: (HookSite(job.layer, job.sae.hook), self.saes[job.key]) for job in needing}
            try:
                results = scorer(self.lm, saes, settings, self.progress)
            except Exception as exc:
                for job in needing:
                    self.reporter.score_failed(job, task, _detail(exc))
                continue
            for job in needing:
                self.reporter.score_finished(job, task, results[job.key])

    def _score_absorption(self, jobs: list[Job]) -> None:
        needing = [(job, task) for job in jobs for task in job.scores if task.kind == "absorption"]
        if not needing:
            return
        layers = sorted({job.layer for job, _ in needing if job.sae.hook == "resid_post"})
        evals: dict = {}
        for job, task in needing:
            try:
                result = self._absorption(job, task, layers, evals)
            except Exception as exc:
                self.reporter.score_failed(job, task, _detail(exc))
                continue
            self.reporter.score_finished(job, task, result)

    def _absorption(self, job: Job, task: ScoreTask, layers: list[int], evals: dict) -> ScoreResult:
        if job.sae.hook != "resid_post":
            reason = "the first-letter absorption eval reads the residual stream; this SAE reads " + job.sae.hook
            return ScoreResult({}, notes={m: reason for m in ABSORPTION_METRICS})
        if task.settings not in evals:
            evals[task.settings] = AbsorptionEval(self.lm, layers, task.settings, self.progress)
        outcome = evals[task.settings].score(self.saes[job.key], job.layer)
        notes = {m: outcome.reason for m in ABSORPTION_METRICS} if outcome.reason else {}
        letters = [LetterRow(r.letter, r.probe_f1, r.scored, r.words, r.mean_absorption, r.full_absorption,
                             r.split_features) for r in outcome.letters]
        return ScoreResult(outcome.metrics, notes=notes, letters=letters, device_name=self.lm.device_name,
                           warning=outcome.warning, resolved=outcome.resolved)
