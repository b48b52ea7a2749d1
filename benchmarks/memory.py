"""Benchmark: peak memory of training at 1x and 10x the token budget (it should not grow).

Activations are streamed: each window's activations go through a fixed-size shuffle buffer and
are dropped once stepped on, so training 10x the tokens should need the same memory. Each budget
trains the demo grid in a fresh process (peak RSS, `ru_maxrss`, is per process and never goes
down); the process reports its RSS after loading the model and its peak after training. On a
GPU the same is read from torch's peak allocated memory.

    python benchmarks/memory.py [--model builtin:demo-base] [--layers 1,3,5] [--tokens 16384]
        [--factor 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    """Resident set size now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def child(model: str, layers: str, tokens: int, device: str) -> dict:
    import torch

    from benchmarks.train_vs_forward import Quiet, make_jobs
    from harness.models import load_model, pick_device
    from harness.train import train_group
    from suite.jobs import DatasetRef, ModelRef, SaeSettings, TrainSettings

    torch.set_num_threads(1)
    lm = load_model(ModelRef(model), pick_device(device))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=tokens, ctx_len=128, batch_size=16, lr=1e-3)
    jobs = make_jobs(lm, train, [int(v) for v in layers.split(",")], SaeSettings(k=32, latents=512, dead_tokens=50_000))
    loaded = _rss_mib()
    if lm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    group = train_group(lm, train, jobs, Quiet())
    out = {"tokens": group.tokens, "rss_after_load_mib": round(loaded, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if lm.device.type == "cuda":
        out["peak_cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:demo-base")
    parser.add_argument("--layers", default="1,3,5")
    parser.add_argument("--tokens", type=int, default=16_384)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.layers, args.child, args.device)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = []
    for tokens in (args.tokens, args.tokens * args.factor):
        cmd = [sys.executable, __file__, "--model", args.model, "--layers", args.layers, "--device", args.device,
               "--child", str(tokens)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, large = results
    report = {"model": args.model, "layers": args.layers, "runs": results,
              "peak_rss_ratio_10x_vs_1x": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
              "training_growth_mib": [round(r["peak_rss_mib"] - r["rss_after_load_mib"], 1) for r in results]}
    if "peak_cuda_allocated_mib" in small:
        report["peak_cuda_ratio_10x_vs_1x"] = round(large["peak_cuda_allocated_mib"] / small["peak_cuda_allocated_mib"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
