"""Benchmark: wall time of one grid of G model groups on the local executor vs the Ray executor
with W workers (a local Ray instance with W CPUs), in one process, plus what N GPUs would give.

The grid trains one model on G seeds: each seed is its own training stream, hence its own group
(one Ray task). Every arm runs the same spec into a fresh results file; the script checks that
they stored the same numbers and reports times and ratios, so the result holds across machines.
Ray's start-up is timed apart from the run. A Ray worker with one CPU runs torch on one thread,
so a third arm runs the local executor on one thread too: local (default threads) vs local
(1 thread) separates what parallel groups bring from what the thread count does. Usage:
    python benchmarks/executors.py [--groups 4] [--workers 2] [--model builtin:tiny-base]
                                   [--layers 0,1,2] [--tokens 12000] [--gpus 8]

On N GPUs: the local executor runs groups one after another on one device, the Ray executor
`min(G, N)` at a time, each task starting a worker and loading its model itself. From the best
local time per group (t_group, model load included) and Ray's measured cost per task beyond it
(o = (ray_s - ceil(G / W) * t_group) / ceil(G / W)), the script prints the Ray wall time on N GPUs,
ceil(G / N) * (t_group + o), and its speed-up over local: G * t_group / (ceil(G / N) * (t_group + o)),
which tends to min(G, N) once groups take minutes to hours (real models) and o is seconds. One
model group never spreads over GPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import duckdb
from rich.console import Console

SPEC = """
[suite]
name = "bench"
db = "{db}"
[models.m]
id = "{model}"
[grid]
models = ["m"]
layers = [{layers}]
[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = {tokens}
ctx_len = 64
batch_size = 8
lr = 1e-3
seed = [{seeds}]
[sae]
k = 24
latents = 96
dead_tokens = 4_000
[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 1_536
sparsity_tokens = 4_096
ctx_len = 64
batch_size = 8
[absorption]
enabled = false
"""

NUMBERS = "select s.sae_id, s.eval_name, m.metric, m.value, m.ci_low, m.ci_high from metrics m join scores s " \
          "using (score_id) order by all"


def timed_run(directory: Path, name: str, args: argparse.Namespace, executor) -> tuple[float, list]:
    from suite.runner import run_spec
    from suite.spec import parse_spec

    db = directory / f"{name}.duckdb"
    text = SPEC.format(db=db, model=args.model, layers=args.layers, tokens=args.tokens,
                       seeds=", ".join(str(s) for s in range(args.groups)))
    spec = parse_spec(text, directory / f"{name}.toml")
    start = time.perf_counter()
    outcome = run_spec(spec, console=Console(quiet=True), executor=executor)
    seconds = time.perf_counter() - start
    assert outcome.exit_code == 0, f"the {name} run failed"
    with duckdb.connect(str(db), read_only=True) as con:
        return seconds, con.execute(NUMBERS).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="builtin:tiny-base")
    parser.add_argument("--layers", default="0,1,2")
    parser.add_argument("--tokens", type=int, default=12_000)
    parser.add_argument("--gpus", type=int, default=8, help="N for the N-GPU estimate")
    args = parser.parse_args()

    import ray
    import torch

    from harness.builtin import is_builtin, model_dir
    from suite.executors import LocalExecutor
    from suite.executors.ray import RayExecutor

    if is_builtin(args.model):
        model_dir(args.model)  # built once before timing, as both arms would find it
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            local1_s, local1_numbers = timed_run(directory, "local1", args, LocalExecutor())
        finally:
            torch.set_num_threads(threads)
        local_s, local_numbers = timed_run(directory, "local", args, LocalExecutor())
        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_start_s = time.perf_counter() - start
        try:
            ray_s, ray_numbers = timed_run(directory, "ray", args, RayExecutor())
        finally:
            ray.shutdown()

    best_local = min(local_s, local1_s)
    per_group = best_local / args.groups  # model load included
    waves = math.ceil(args.groups / args.workers)
    per_task_overhead = max(0.0, ray_s - waves * per_group) / waves  # worker start, imports, model load per task
    n_gpu_ray = math.ceil(args.groups / args.gpus) * (per_group + per_task_overhead)
    print(json.dumps({
        "model": args.model, "groups": args.groups, "ray_workers": args.workers, "tokens_per_sae": args.tokens,
        "saes_per_group": len(args.layers.split(",")),
        "local_threads": threads, "local_s": round(local_s, 2), "local_1_thread_s": round(local1_s, 2),
        "ray_s": round(ray_s, 2), "ray_start_s": round(ray_start_s, 2),
        "speedup_ray_vs_local": round(local_s / ray_s, 2),
        "speedup_ray_vs_local_with_start": round(local_s / (ray_s + ray_start_s), 2),
        "speedup_ray_vs_local_1_thread": round(local1_s / ray_s, 2),
        # CPU numbers depend on torch's thread count (summation order); a Ray worker runs one thread
        "same_numbers_ray_vs_local_1_thread": ray_numbers == local1_numbers,
        "same_numbers_ray_vs_local": ray_numbers == local_numbers,
        "local_s_per_group": round(per_group, 2),
        "ray_overhead_s_per_task": round(per_task_overhead, 2),
        f"estimate_ray_s_on_{args.gpus}_gpus": round(n_gpu_ray, 2),
        f"estimate_speedup_on_{args.gpus}_gpus_vs_best_local": round(best_local / n_gpu_ray, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
