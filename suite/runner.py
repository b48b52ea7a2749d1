"""`sae-bench run`: spec -> plan -> harness -> store, training and scoring only what is missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from suite.executors import Executor, make_executor
from suite.health import evaluate_gates
from suite.jobs import Job, ScoreResult, ScoreTask, TrainLogRow, TrainResult
from suite.plan import DONE, TO_TRAIN, PlannedSae, declared_saes, plan
from suite.provenance import run_provenance
from suite.spec import Spec
from suite.store import Store
from suite.store.lock import WriterLock
from suite.store.recovery import reconcile
from suite.store.store import GateVerdict
from suite.wandb_mirror import WandbMirror, wandb_target


class StoreReporter:
    """The harness's JobReporter, writing through to the store and gating each finished score."""

    def __init__(self, store: Store, spec: Spec, run_id: str, console: Console, mirror: WandbMirror | None = None):
        self.store, self.spec, self.run_id, self.console, self.mirror = store, spec, run_id, console, mirror
        self.failed_saes: list[Job] = []
        self.ready: list[Job] = []
        self.scored: list[tuple[Job, ScoreTask]] = []
        self.failed_scores: list[tuple[Job, ScoreTask]] = []
        self.started: set[str] = set()
        self.warned: set[str] = set()
        self._device_recorded = False
        self._scores_settled: dict[str, int] = {}  # sae key -> scores of this run stored or failed
        self._fresh: set[str] = set()  # sae keys trained, imported or scored in this run

    def sae_started(self, job: Job) -> None:
        self.started.add(job.key)
        self.store.mark_sae_running(job)

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        self.store.add_train_log(job, rows)

    def sae_failed(self, job: Job, error: str) -> None:
        self.failed_saes.append(job)
        self.store.mark_sae_failed(job, error)
        self.console.print(f"[red]failed[/red] {escape(job.describe())}: {escape(error.splitlines()[0])}")

    def sae_ready(self, job: Job, result: TrainResult) -> None:
        self.store.sae_ready(job, result)
        self.ready.append(job)
        self._fresh.add(job.key)
        self._record_device(result.device_name, result.threads)
        if not job.scores:
            self._settled(job)

    def score_finished(self, job: Job, task: ScoreTask, result: ScoreResult) -> None:
        self.store.finish_score(self.run_id, job, task, result, gate(self.spec, job, task.name, result.metrics,
                                                                       result.notes))
        self.scored.append((job, task))
        self._fresh.add(job.key)
        self._record_device(result.device_name, result.threads)
        self._settled(job)
        if result.warning and task.name not in self.warned:
            self.warned.add(task.name)
            self.console.print(f"[yellow]warning[/yellow] {escape(task.name)}: {escape(result.warning)}",
                               highlight=False)

    def score_failed(self, job: Job, task: ScoreTask, error: str) -> None:
        self.failed_scores.append((job, task))
        self.store.fail_score(self.run_id, job, task, error)
        self._settled(job)
        self.console.print(f"[red]failed[/red] {escape(job.describe())} on {escape(task.name)}: "
                           f"{escape(error.splitlines()[0])}")

    def _settled(self, job: Job) -> None:
        """Count a score of `job` as stored or failed; once all are, mirror the SAE (W&B)."""
        done = self._scores_settled.get(job.key, 0) + (1 if job.scores else 0)
        self._scores_settled[job.key] = done
        if self.mirror is not None and done >= len(job.scores) and job.key in self._fresh:
            self.mirror.mirror(job.sae_id)

    def _record_device(self, device_name: str | None, threads: int | None) -> None:
        """The run's device and torch threads, from its first result (a Ray worker's, if Ray ran it)."""
        if (device_name or threads) and not self._device_recorded:
            self.store.set_run_device(self.run_id, device_name, threads)
            self._device_recorded = True


def gate(spec: Spec, job: Job, eval_name: str, metrics: dict[str, float], notes: dict[str, str]) -> GateVerdict:
    """The spec's verdicts for one score. Gates on metrics another eval produces are left out
    (absorption's gate lives on the absorption score, sparse probing's on each probing dataset's,
    loss recovered's on the dataset evals)."""
    from suite.catalog import ABSORPTION_METRICS, CORE_METRICS, PROBING_METRICS

    policy = spec.gate_policy(job.model.name, job.layer, eval_name)
    produced = (ABSORPTION_METRICS if eval_name == "absorption"
                else PROBING_METRICS if eval_name in spec.model.probing else CORE_METRICS)
    relevant = tuple(t for t in policy.thresholds if t.metric in produced)
    return (type(policy)(relevant, policy.allow_fail), evaluate_gates(relevant, metrics, notes))


@dataclass
class RunOutcome:
    run_id: str
    db_path: Path
    planned: list[PlannedSae]
    trained: int = 0
    scored: int = 0
    failed: int = 0
    sae_ids: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def regate(store: Store, spec: Spec, planned: list[PlannedSae]) -> None:
    """Gate stored scores with the spec's current thresholds (they may have changed)."""
    by_id = {p.declared.ref.sae_id: p for p in planned}
    regated = []
    for score in store.current_scores(list(by_id)):
        job = Job(by_id[score["sae_id"]].declared.ref, train=False, scores=())
        regated.append((score["score_id"], gate(spec, job, score["eval_name"], score["metrics"], score["notes"])))
    if regated:
        store.replace_many_gates(regated)  # one transaction, however many SAEs the file holds


def run_spec(spec: Spec, db_override: str | None = None, device: str | None = None,
             console: Console | None = None, executor: Executor | None = None,
             wandb_project: str | None = None) -> RunOutcome:
    """Plan, train and score under the results file's writer lock (StoreBusy if another run
    holds it). Whatever ends the run, no SAE it registered and no run row is left `pending` or
    `running`: a stop marks them `interrupted`, an error `failed` with its one-line reason.
    `executor`: where the model groups run (default: the spec's `[suite] executor`); this
    process stays the only writer of the results file either way. `wandb_project`: mirror each SAE
    this run finishes to Weights & Biases (default: the spec's `[suite] wandb`)."""
    console = console or Console()
    executor = executor or make_executor(spec.model.suite.executor)
    declared = declared_saes(spec)  # raises SpecError before anything is written
    db_path = spec.db_path(db_override)
    store = Store(db_path, on_wait=lambda holder: console.print(
        f"[yellow]waiting[/yellow] for {escape(holder)}, which holds {escape(str(db_path))} open; the run goes on "
        f"when it lets go", highlight=False))
    store.check_writable()  # another program's file is refused before a lock file appears beside it
    with WriterLock(db_path, "run"):
        store.init()
        _recover(store, spec.checkpoint_dir(db_path), console)
        target = wandb_target(spec.model.suite.wandb, wandb_project)
        mirror = WandbMirror(target, store, console) if target else None
        return _run_locked(spec, store, declared, device, console, executor, mirror)


def _recover(store: Store, checkpoints: Path, console: Console) -> None:
    runs, saes = reconcile(store)
    if runs or saes:
        console.print(f"[dim]{len(runs)} run(s) and {len(saes)} SAE(s) left running by a stopped run marked "
                      f"interrupted; they are resumed now[/dim]", highlight=False)
    from harness.builtin import clean_stale_builds
    from harness.checkpoint import TEMP_PREFIX
    from harness.tempdirs import clean_stale

    clean_stale(checkpoints, TEMP_PREFIX)  # checkpoints a killed run was writing
    clean_stale_builds()  # built-in assets a killed run was building


def _run_locked(spec: Spec, store: Store, declared: list, device: str | None, console: Console,
                executor: Executor, mirror: WandbMirror | None = None) -> RunOutcome:
    db_path = store.path
    planned = plan(spec, declared, store)
    jobs = [job for p in planned if (job := p.job(spec.log_every)) is not None]
    device = device or spec.model.suite.device
    if jobs:
        executor.open(device)  # raises ExecutorError before the run is recorded
    run_id = store.start_run(spec.name, str(spec.path), spec.text, device, len(planned),
                             sum(p.state == TO_TRAIN for p in planned), sum(len(p.missing) for p in planned),
                             run_provenance(), executor=executor.name)
    reporter = StoreReporter(store, spec, run_id, console, mirror)
    registered: list[Job] = []
    run_status = "failed"
    try:
        store.relabel(spec.name, [(p.key, p.declared.ref.model.name, p.declared.label or None) for p in planned])
        regate(store, spec, planned)
        done = [p for p in planned if p.state == DONE]
        if done:
            console.print(f"[dim]{len(done)} SAE(s) already trained and scored in {escape(str(db_path))}; "
                          f"re-gated with the spec's current thresholds[/dim]")
        if jobs:
            registered = [job for job in jobs if job.train or job.sae.source is not None and not job.checkpoint]
            store.register_saes(run_id, spec.name, registered)
            executor.run(jobs, reporter, spec.checkpoint_dir(db_path).absolute(), device, console)
        failed = len(reporter.failed_saes) + len(reporter.failed_scores)
        run_status = "failed" if failed else "finished"
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)
        run_status = "interrupted" if stopped else "failed"
        reason = ("interrupted: the run was stopped before this SAE finished" if stopped
                  else f"failed: the run stopped on an error before this SAE finished: {_one_line(exc)}")
        _close_unfinished(store, reporter, registered, reason, "interrupted" if stopped else "failed")
        raise
    finally:
        _safely(lambda: store.finish_run(run_id, run_status))
        _safely(executor.close)
    return RunOutcome(run_id, db_path, planned, trained=len(reporter.ready), scored=len(reporter.scored),
                      failed=len(reporter.failed_saes) + len(reporter.failed_scores),
                      sae_ids=[p.declared.ref.sae_id for p in planned])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_unfinished(store: Store, reporter: StoreReporter, registered: list[Job], reason: str,
                      status: str) -> None:
    finished = {job.key for job in reporter.ready + reporter.failed_saes}
    for job in registered:
        if job.key not in finished:
            _safely(lambda job=job: store.mark_sae_failed(job, reason, status=status))


def _safely(write) -> None:
    """A write while the run is already ending on an error: if it fails too (disk full), the
    next run or report marks the rows from the free writer lock (suite.store.recovery)."""
    try:
        write()
    except Exception:
        pass
