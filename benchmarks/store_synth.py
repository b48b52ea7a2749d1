"""A synthetic results file at a lab's scale, written through the store's own API.

    python benchmarks/store_synth.py results/synthetic.duckdb            # 10,000 SAEs, 100 runs
    python benchmarks/store_synth.py /tmp/s.duckdb --models 2 --seeds 1   # smaller

The grid is a real spec (4 models x 25 layers x 5 k x 4 dictionary sizes x 5 seeds = 10,000
SAEs, two dataset evals, absorption off), expanded and keyed by the suite itself; each of 100
runs registers its share of SAEs, writes their training curves (25 points), marks them done and
stores two core scores each (every core metric, intervals where the catalogue has them, a
latent-density histogram) gated by the spec's thresholds through `suite.runner.gate`. Only the
numbers are made up (seeded, plausible: loss recovered falls with depth, L0 stays under k).
Everything goes through `Store`'s list methods, so the file is what `run` would write.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.catalog import CORE_METRICS, INTERVAL_METRICS  # noqa: E402
from suite.grid import score_tasks, trained_saes  # noqa: E402
from suite.jobs import DensityBin, Job, ScoreResult, TrainLogRow, TrainResult  # noqa: E402
from suite.provenance import run_provenance  # noqa: E402
from suite.runner import gate  # noqa: E402
from suite.spec import parse_spec  # noqa: E402
from suite.store import Store  # noqa: E402

SPEC = """
[suite]
name = "synthetic"

{models}

[grid]
models = [{names}]
layers = [{layers}]

[train]
dataset = {{ path = "corpus", split = "train" }}
tokens = 50_000_000
ctx_len = 1024
batch_size = 8
lr = 1e-3
seed = [{seeds}]

[sae]
k = [16, 32, 64, 128, 256]
latents = [4096, 8192, 16384, 32768]

[eval.web]
dataset = {{ path = "web", split = "test" }}
tokens = 200_000
[eval.news]
dataset = {{ path = "news", split = "test" }}
tokens = 200_000

[absorption]
enabled = false
"""
CURVE_POINTS = 25


def spec_text(models: int, layers: int, seeds: int) -> str:
    names = [f"m{i}" for i in range(models)]
    return SPEC.format(models="\n".join(f'[models.{n}]\nid = "org/model-{n}"' for n in names),
                       names=", ".join(f'"{n}"' for n in names), layers=", ".join(map(str, range(layers))),
                       seeds=", ".join(map(str, range(seeds))))


def metrics_for(job: Job, eval_name: str, rng: random.Random, depth: int) -> ScoreResult:
    k, latents, layer = job.sae.sae.k, job.sae.sae.latents, job.layer
    recovered = min(0.999, max(0.0, 0.99 - 0.4 * layer / depth + 0.02 * (k / 256) + rng.gauss(0, 0.01)))
    dead = min(1.0, max(0.0, 0.02 + 0.3 * layer / depth * (latents / 32768) + rng.gauss(0, 0.02)))
    l0 = k * (0.9 + 0.1 * rng.random())
    values = {name: rng.random() for name in CORE_METRICS}
    values.update(loss_recovered=recovered, dead_fraction=dead, l0=l0, l1=l0 * 3.1, kl_score=recovered + 0.005,
                  explained_variance=recovered - 0.1, cossim=0.8 + 0.2 * recovered, ce_clean=2.1, ce_zero=9.5,
                  ce_sae=2.1 + (1 - recovered) * 7.4, eval_tokens=200_000.0, sparsity_eval_tokens=4_096_000.0)
    if eval_name == "news":
        values["loss_recovered"] -= 0.01
    intervals = {name: (values[name] - 0.005, values[name] + 0.005) for name in INTERVAL_METRICS if name in values}
    silent = int(dead * latents)
    edges = [-8 + 0.5 * i for i in range(17)]
    spread = [rng.random() for _ in edges[:-1]]
    counts = [int((latents - silent) * s / sum(spread)) for s in spread]
    counts[-1] += latents - silent - sum(counts)
    density = [DensityBin(None, None, silent)] + [DensityBin(lo, hi, n) for lo, hi, n in zip(edges, edges[1:], counts)]
    return ScoreResult(values, intervals=intervals, density=density, seconds=30.0, dataset_fingerprint="f" * 64,
                       device_name="NVIDIA H100 80GB HBM3", loaded_dtype="bfloat16", threads=8)


def generate(path: Path, models: int = 4, layers: int = 25, seeds: int = 5, runs: int = 100,
             seed: int = 0) -> dict[str, float]:
    """Write the synthetic file; returns counts and the seconds it took."""
    started = time.perf_counter()
    text = spec_text(models, layers, seeds)
    spec = parse_spec(text, "synthetic.toml")
    tasks = [t for t in score_tasks(spec) if t.kind == "core"]
    jobs = [Job(d.ref, train=True, scores=tuple(tasks)) for d in trained_saes(spec)]
    rng = random.Random(seed)
    store = Store(path)
    store.init()
    checkpoints = path.absolute().with_name(path.stem + "-checkpoints")  # empty directories, as a run leaves them
    share = -(-len(jobs) // runs)
    for index in range(runs):
        chunk = jobs[index * share:(index + 1) * share]
        if not chunk:
            break
        run_id = store.start_run(spec.name, "synthetic.toml", text, "cuda", len(chunk), len(chunk),
                                 len(chunk) * len(tasks), run_provenance(), executor="local")
        store.register_saes(run_id, spec.name, chunk)
        store.add_train_logs([(job, [TrainLogRow(step, step * 8192, 1.0 / step, 0.5 / step ** 0.5, job.sae.sae.k,
                                                 0.01 * step / CURVE_POINTS)
                                     for step in range(1, 2000, 2000 // CURVE_POINTS)][:CURVE_POINTS])
                              for job in chunk])
        for job in chunk:
            (checkpoints / job.sae_id).mkdir(parents=True, exist_ok=True)
        store.saes_ready([(job, TrainResult(str(checkpoints / job.sae_id), 4096, 3600.0, 14_000.0, "0" * 64,
                                            "commit:abc", "e" * 64, "NVIDIA H100 80GB HBM3",
                                            f"model.layers.{job.layer}", loaded_dtype="bfloat16", threads=8))
                          for job in chunk])
        finished = []
        for job in chunk:
            for task in tasks:
                result = metrics_for(job, task.name, rng, layers)
                finished.append((job, task, result, gate(spec, job, task.name, result.metrics, result.notes)))
        store.finish_scores(run_id, finished)
        store.set_run_device(run_id, "NVIDIA H100 80GB HBM3", 8)
        store.finish_run(run_id, "finished")
    counts = dict(zip(("saes", "scores", "metrics", "train_log", "gates", "runs"), store.query(
        "select (select count(*) from saes), (select count(*) from scores), (select count(*) from metrics), "
        "(select count(*) from train_log), (select count(*) from gates), (select count(*) from runs)")[0]))
    return {**counts, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    if args.db.exists():
        parser.error(f"{args.db} exists: give a new path")
    print(generate(args.db, args.models, args.layers, args.seeds, args.runs))


if __name__ == "__main__":
    main()
