"""`sae-bench run`: spec -> jobs -> harness -> store, skipping jobs already done."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from suite.grid import expand
from suite.health import evaluate_gates
from suite.jobs import Job, JobResult, TrainLogRow
from suite.spec import Spec, SpecError
from suite.store import GateVerdicts, Store


def check_layers(spec: Spec, jobs: list[Job]) -> list[str]:
    """Layers beyond a model's depth, where the depth can be read without loading weights.

    Reads only configs (built-in recipes, local or cached config.json); a model whose config
    cannot be reached offline is checked at run time instead.
    """
    from harness.models import model_depth  # the harness is imported lazily: config only

    too_deep: dict[int, list[str]] = {}
    for name in spec.model.grid.models:
        model = next(job.model for job in jobs if job.model.name == name)
        depth = model_depth(model)
        for layer in spec.model.grid.layers:
            if depth is not None and layer >= depth:
                too_deep.setdefault(layer, []).append(f"models.{name} ({model.id}) has {depth}, 0..{depth - 1}")
    if not too_deep:
        return []
    models = sorted({m for ms in too_deep.values() for m in ms})
    return [f"grid.layers: {sorted(too_deep)} out of range: {'; '.join(models)}"]


def validated_jobs(spec: Spec) -> list[Job]:
    jobs = expand(spec)
    problems = check_layers(spec, jobs)
    if problems:
        raise SpecError(spec.path, problems)
    return jobs


class StoreReporter:
    """The harness's JobReporter, writing through to the store and gating each finished job."""

    def __init__(self, store: Store, spec: Spec, console: Console):
        self.store = store
        self.spec = spec
        self.console = console
        self.failed: list[Job] = []
        self.finished: list[Job] = []

    def job_started(self, job: Job) -> None:
        self.store.mark_running(job)

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        self.store.add_train_log(job, rows)

    def job_failed(self, job: Job, error: str) -> None:
        self.failed.append(job)
        self.store.mark_failed(job, error)
        self.console.print(f"[red]failed[/red] {job.describe()}: {error.splitlines()[0]}")

    def job_finished(self, job: Job, result: JobResult) -> None:
        notes = {eval_name: result.notes for eval_name in result.metrics}
        self.store.finish_job(job, result, gate(self.spec, job, result.metrics, notes))
        self.finished.append(job)


def gate(spec: Spec, job: Job, metrics: dict[str, dict[str, float]],
         notes: dict[str, dict[str, str]]) -> GateVerdicts:
    """The spec's verdicts for one job, per eval dataset."""
    verdicts: GateVerdicts = {}
    for eval_name, values in metrics.items():
        policy = spec.gate_policy(job.model.name, job.layer, eval_name)
        verdicts[eval_name] = (policy, evaluate_gates(policy.thresholds, values, notes.get(eval_name, {})))
    return verdicts


@dataclass
class RunOutcome:
    run_id: str
    db_path: Path
    planned: int
    skipped: int
    finished: int
    failed: int
    job_ids: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_spec(spec: Spec, db_override: str | None = None, device: str | None = None,
             console: Console | None = None) -> RunOutcome:
    console = console or Console()
    jobs = validated_jobs(spec)  # raises SpecError before anything is written
    db_path = spec.db_path(db_override)
    store = Store(db_path)
    store.init()
    status = store.job_status([job.key for job in jobs])
    todo = [job for job in jobs if status.get(job.key) != "done"]
    skipped = len(jobs) - len(todo)
    device = device or spec.model.suite.device
    run_id = store.start_run(spec.name, str(spec.path), spec.text, device, len(jobs), skipped)
    if skipped:
        console.print(f"[dim]skipping {skipped} job(s) already done in {db_path}; re-gating them with "
                      f"the spec's current thresholds[/dim]")
        for job in jobs:
            if status.get(job.key) == "done":
                console.print(f"[dim]  skipped {job.job_id} {job.describe()}[/dim]")
                store.replace_gates(job, gate(spec, job, *store.stored_metrics(job.job_id)))
    reporter = StoreReporter(store, spec, console)
    run_status = "failed"
    try:
        if todo:
            store.prepare_jobs(run_id, spec.name, todo)
            from harness.engine import run_jobs  # the only place the suite drives the harness

            run_jobs(todo, reporter, spec.checkpoint_dir(db_path), device, console)
        run_status = "failed" if reporter.failed else "finished"
    except KeyboardInterrupt:
        run_status = "interrupted"
        done = {job.key for job in reporter.finished + reporter.failed}
        for job in todo:
            if job.key not in done:
                store.mark_failed(job, "interrupted: the run was stopped before this job finished")
        raise
    finally:
        store.finish_run(run_id, run_status)
    return RunOutcome(run_id, db_path, len(jobs), skipped, len(reporter.finished), len(reporter.failed),
                      [job.job_id for job in jobs])
