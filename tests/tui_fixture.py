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


def build(path: Path) -> Path:
    store = Store(path)
    store.init()
    spec = parse_spec(SPEC, "snap.toml")
    tasks = score_tasks(spec)
    jobs = [Job(d.ref, train=True, scores=tasks) for d in trained_saes(spec)]
    run_id = store.start_run("snap", "snap.toml", SPEC, "cuda", len(jobs), len(jobs), len(jobs) * len(tasks), {})
    store.register_saes(run_id, "snap", jobs)
    for job in jobs:
        recovered, dead = NUMBERS[(job.model.name, job.layer)]
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
