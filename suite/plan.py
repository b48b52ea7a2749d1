"""Planning: what a spec run must do, given what the results file already holds.

Per SAE of the spec: train it (or import it) when the file has no finished SAE under its key or
its checkpoint is gone; score it on every eval whose score (SAE key + eval settings + metric
version) the file lacks; otherwise it is done. So adding an eval scores existing SAEs only and
renaming an alias re-runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from suite.grid import DeclaredSae, imported_saes, score_tasks, trained_saes
from suite.jobs import Job, ScoreTask
from suite.model_checks import model_problems
from suite.spec import Spec, SpecError
from suite.store import Store

TO_TRAIN, TO_IMPORT, TO_SCORE, DONE = "to train", "to import", "to score", "done"


@dataclass(frozen=True)
class PlannedSae:
    declared: DeclaredSae
    state: str  # to train | to import | to score | done
    missing: tuple[ScoreTask, ...]  # score tasks the file lacks
    checkpoint: str | None = None
    note: str = ""  # e.g. why an SAE marked done is trained again

    @property
    def key(self) -> str:
        return self.declared.ref.key

    def job(self, log_every: int) -> Job | None:
        if self.state == DONE:
            return None
        return Job(self.declared.ref, train=self.state == TO_TRAIN, scores=self.missing, checkpoint=self.checkpoint,
                   log_every=log_every, label=self.declared.label)


def resolve_imports(spec: Spec, declared: list[DeclaredSae]) -> list[DeclaredSae]:
    """Imported SAEs found, checked against their hook site and model width (where the model's
    config is on disk), and with their identity fixed by the digest of their files."""
    if not declared:
        return []
    from harness.formats import resolve
    from harness.models import model_width

    widths: dict[str, int | None] = {}
    resolved, problems = [], []
    for item in declared:
        ref = item.ref
        assert ref.source is not None
        if ref.model.name not in widths:
            widths[ref.model.name] = model_width(ref.model)
        try:
            source = resolve(ref.source, ref.layer, ref.hook, widths[ref.model.name])
            resolved.append(replace(item, ref=replace(ref, source=source)))
        except Exception as exc:
            problems.append(f"saes.{item.label}.source: {exc}")
    if problems:
        raise SpecError(spec.path, problems)
    return resolved


def declared_saes(spec: Spec) -> list[DeclaredSae]:
    """Every SAE of the spec, validated against what can be checked offline (raises SpecError)."""
    trained = trained_saes(spec)
    imported = imported_saes(spec)
    problems = model_problems(spec, trained + imported)
    if problems:
        raise SpecError(spec.path, problems)
    return trained + resolve_imports(spec, imported)


def plan(spec: Spec, declared: list[DeclaredSae], store: Store | None) -> list[PlannedSae]:
    tasks = score_tasks(spec)
    keys = [d.ref.key for d in declared]
    task_keys = [[t.key(k) for t in tasks] for k in keys]  # each score key once: a grid may hold 100k SAEs
    saes = store.sae_states(keys) if store is not None else {}
    scores = store.score_states([sk for row in task_keys for sk in row]) if store is not None else {}
    planned = []
    for item, key, row in zip(declared, keys, task_keys):
        status, checkpoint = saes.get(key, (None, None))
        missing = tuple(t for t, sk in zip(tasks, row) if scores.get(sk) != "done")
        note = ""
        if status == "done" and item.ref.trained_here and not (checkpoint and Path(checkpoint).exists()):
            status, note = None, f"its checkpoint {checkpoint} is missing"
            missing = tasks
        if status == "done":
            state = TO_SCORE if missing else DONE
        else:
            state = TO_TRAIN if item.ref.trained_here else TO_IMPORT
        planned.append(PlannedSae(item, state, missing, checkpoint if status == "done" else None, note))
    return planned
