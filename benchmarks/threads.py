"""Benchmark: training throughput by torch intra-op thread count (all cores, cores - 1, 1).

Each count trains the demo grid in a fresh process (torch fixes some thread pools at start);
counts alternate over repeats and the result is wall-clock SAE tokens/s, since the point is how
long a run takes with whatever else shares the machine (CPU time would hide oversubscription).
State the machine's load with the numbers: on an idle machine more threads may win, on a shared
one fewer do. harness/threads.py holds the default this measures (cores - 1, at least 1).

    python benchmarks/threads.py [--tokens 20480] [--repeats 2] [--counts 2,1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(threads: int, tokens: int) -> dict:
    import time

    import torch

    from benchmarks.train_vs_forward import Quiet, make_jobs
    from harness.models import load_model
    from harness.train import train_group
    from suite.jobs import DatasetRef, ModelRef, SaeSettings, TrainSettings

    torch.set_num_threads(threads)
    lm = load_model(ModelRef("builtin:demo-base"), torch.device("cpu"))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=tokens, ctx_len=128, batch_size=16, lr=1e-3)
    jobs = make_jobs(lm, train, [1, 3, 5], SaeSettings(k=32, latents=512, dead_tokens=50_000))
    start = time.perf_counter()
    group = train_group(lm, train, jobs, Quiet())
    return {"threads": torch.get_num_threads(), "wall": time.perf_counter() - start, "sae_tokens": group.tokens * 3}


def main() -> None:
    from harness.threads import available_cores, default_threads

    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_480)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--counts", default=",".join(str(c) for c in sorted({cores, max(1, cores - 1), 1}, reverse=True)))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens)))
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OMP_NUM_THREADS", None)  # each child sets its own count
    counts = [int(c) for c in args.counts.split(",")]
    rates: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(args.repeats):
        for count in counts:
            done = subprocess.run([sys.executable, __file__, "--child", str(count), "--tokens", str(args.tokens)],
                                  env=env, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rates[count].append(r["sae_tokens"] / r["wall"])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(json.dumps({
        "cores": cores, "default_threads": default_threads(cores), "load_average_after": load,
        "sae_tokens_per_s_wall": {str(c): [round(r) for r in v] for c, v in rates.items()},
        "median_vs_one_thread": {str(c): round(statistics.median(v) / statistics.median(rates[1]), 3)
                                 for c, v in rates.items()} if 1 in rates else {},
    }, indent=2))


if __name__ == "__main__":
    main()
