"""A small results file with fixed numbers, run ids and times, for stable TUI snapshots."""

from __future__ import annotations

from pathlib import Path

from suite.grid import score_tasks, trained_saes
from suite.jobs import Job, ScoreResult, TrainLogRow, TrainResult
from suite.runner import gate
from suite.spec import parse_spec
from suite.store import Store

SPEC = """
[suite]
name = "snap"
[models.base]
id = "org/base-model"
[models.tuned]
id = "org/tuned-model"
[grid]
models = ["base", "tuned"]
layers = [2, 6, 10]
[train]
dataset = { path = "corpus", split = "train" }
tokens = 1_000_000
ctx_len = 256
batch_size = 8
lr = 1e-3
[sae]
k = 32
latents = 1024
[eval.web]
dataset = { path = "web", split = "test" }
tokens = 10_000
[eval.news]
dataset = { path = "news", split = "test" }
tokens = 10_000
[absorption]
enabled = true
"""

# (loss recovered, dead fraction) per model and layer: tuned is worse deep down
NUMBERS = {("base", 2): (0.97, 0.05), ("base", 6): (0.91, 0.12), ("base", 10): (0.72, 0.31),
           ("tuned", 2): (0.96, 0.08), ("tuned", 6): (0.83, 0.26), ("tuned", 10): (0.55, 0.45)}


def build(path: Path, seeds: list[int] | None = None) -> Path:
    """The snap results file; with `seeds`, a seed axis whose seed s shifts loss recovered by
    -0.02 s and dead fraction by +0.05 s (so base layer 6 fails the dead-fraction gate at seed 2)."""
    store = Store(path)
    store.init()
    text = SPEC if seeds is None else SPEC.replace("lr = 1e-3", f"lr = 1e-3\nseed = {seeds}")
    spec = parse_spec(text, "snap.toml")
    tasks = score_tasks(spec)
    jobs = [Job(d.ref, train=True, scores=tasks) for d in trained_saes(spec)]
    run_id = store.start_run("snap", "snap.toml", SPEC, "cuda", len(jobs), len(jobs), len(jobs) * len(tasks), {})
    store.register_saes(run_id, "snap", jobs)
    for job in jobs:
        recovered, dead = NUMBERS[(job.model.name, job.layer)]
        if seeds is not None:
            seed = job.sae.train.seed
            recovered, dead = recovered - 0.02 * seed, dead + 0.05 * seed
        store.mark_sae_running(job)
        store.add_train_log(job, [TrainLogRow(step, step * 2048, 1 / step, 1 / step, 32.0, 0.5 / step)
                                  for step in range(1, 60, 5)])
        store.sae_ready(job, TrainResult(f"checkpoints/{job.sae_id}", 512, 60.0, 2048.0))
        for task in tasks:
            if task.kind == "absorption":
                result = ScoreResult({}, notes={"absorption": "too few letters"})
            else:
                shift = 0.0 if task.name == "web" else -0.01
                result = ScoreResult(
                    {"loss_recovered": recovered + shift, "dead_fraction": dead, "l0": 31.5 + shift,
                     "explained_variance": recovered - 0.05, "kl_score": recovered + 0.01, "ce_clean": 2.0},
                    intervals={"loss_recovered": (recovered + shift - 0.01, recovered + shift + 0.01)})
            store.finish_score(run_id, job, task, result, gate(spec, job, task.name, result.metrics, result.notes))
    with store.transaction() as con:
        con.execute("update runs set run_id = '20260101-000000-aaaaaa', started_at = '2026-01-01 00:00', "
                    "finished_at = '2026-01-01 01:00', status = 'finished'")
        con.execute("update saes set run_id = '20260101-000000-aaaaaa', finished_at = '2026-01-01 00:30'")
        con.execute("update scores set run_id = '20260101-000000-aaaaaa', finished_at = '2026-01-01 00:40'")
    return path


# ------------------------------------------------------------------ a run writing while the TUI reads

LATE_SPEC = SPEC.replace('name = "snap"', 'name = "late"').replace(
    '[models.base]\nid = "org/base-model"\n[models.tuned]\nid = "org/tuned-model"', '[models.late]\nid = "org/late-model"'
).replace('models = ["base", "tuned"]', 'models = ["late"]')
LATE_RECOVERED = {2: 0.93, 6: 0.61, 10: None}  # layer 10 fails to train


def late_run_steps(path: Path):
    """A second run written step by step through the store API, as `sae-bench run` writes it:
    yields a name after each step (the caller decides when the next one happens)."""
    store = Store(path)
    spec = parse_spec(LATE_SPEC, "late.toml")
    tasks = score_tasks(spec)
    jobs = [Job(d.ref, train=True, scores=tasks) for d in trained_saes(spec)]
    run_id = store.start_run("late", "late.toml", LATE_SPEC, "cpu", len(jobs), len(jobs), len(jobs) * len(tasks),
                             {})
    store.register_saes(run_id, "late", jobs)
    yield "registered"
    for job in jobs:
        store.mark_sae_running(job)
        yield f"layer {job.layer} running"
        recovered = LATE_RECOVERED[job.layer]
        if recovered is None:
            store.mark_sae_failed(job, "loss diverged at step 40")
            yield f"layer {job.layer} failed"
            continue
        store.add_train_log(job, [TrainLogRow(step, step * 2048, 1 / step, 1 / step, 32.0, 0.5 / step)
                                  for step in range(1, 30, 5)])
        store.sae_ready(job, TrainResult(f"checkpoints/{job.sae_id}", 512, 60.0, 2048.0))
        yield f"layer {job.layer} trained"
        for task in tasks:
            if task.kind == "absorption":
                result = ScoreResult({}, notes={"absorption": "too few letters"})
            else:
                result = ScoreResult({"loss_recovered": recovered, "dead_fraction": 0.1, "l0": 31.0,
                                      "explained_variance": recovered - 0.05, "kl_score": recovered, "ce_clean": 2.0})
            store.finish_score(run_id, job, task, result, gate(spec, job, task.name, result.metrics, result.notes))
            yield f"layer {job.layer} scored {task.name}"
    store.finish_run(run_id, "finished")
    yield "finished"


def add_sae(path: Path, model: str, layer: int, recovered: float, dead: float) -> str:
    """One more finished, scored SAE of the snap spec's `model` at `layer`; its id."""
    store = Store(path)
    spec = parse_spec(SPEC.replace("layers = [2, 6, 10]", f"layers = [{layer}]"), "snap.toml")
    tasks = score_tasks(spec)
    jobs = [Job(d.ref, train=True, scores=tasks) for d in trained_saes(spec)]
    job = next(j for j in jobs if j.model.name == model)
    run_id = store.start_run("snap", "snap.toml", SPEC, "cpu", 1, 1, len(tasks), {})
    store.register_saes(run_id, "snap", [job])
    store.sae_ready(job, TrainResult(f"checkpoints/{job.sae_id}", 512, 60.0, 2048.0))
    for task in tasks:
        metrics = {} if task.kind == "absorption" else {"loss_recovered": recovered, "dead_fraction": dead, "l0": 31.0}
        result = ScoreResult(metrics, notes={"absorption": "too few letters"} if task.kind == "absorption" else {})
        store.finish_score(run_id, job, task, result, gate(spec, job, task.name, result.metrics, result.notes))
    store.finish_run(run_id, "finished")
    return job.sae_id


if __name__ == "__main__":  # python tests/tui_fixture.py late DB: the late run, one step per line on stdin
    import sys

    for name in late_run_steps(Path(sys.argv[2])):
        print(name, flush=True)
        sys.stdin.readline()
        if name == "layer 2 trained":  # hold the file as a writer would during a long write
            with Store(sys.argv[2]).transaction():
                print("holding", flush=True)
                sys.stdin.readline()
