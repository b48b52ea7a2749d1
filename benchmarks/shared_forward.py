"""Benchmark: training all SAEs of a model from one shared forward pass vs one pass per SAE.

Both arms train the same SAEs (same layers, settings, tokens) on the same model in this process,
one SAE step at a time (fuse=False: benchmarks/fused.py measures fusion) so only the sharing differs;
the result is a ratio, so it holds across machines. Usage:
    python benchmarks/shared_forward.py [--model builtin:demo-base] [--tokens 60000] [--device auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from harness.models import load_model, pick_device
from harness.train import train_group
from suite.jobs import DatasetRef, Job, ModelRef, SaeRef, SaeSettings, TrainSettings


class _Discard:
    def train_log(self, job, rows): ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:demo-base")
    parser.add_argument("--layers", default="1,3,5")
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(ModelRef(args.model), pick_device(args.device))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=args.tokens, ctx_len=128,
                          batch_size=16, lr=1e-3)
    jobs = [Job(SaeRef(lm.ref, "resid_post", int(layer), train, SaeSettings(k=32, latents=512)), True, ())
            for layer in args.layers.split(",")]
    train_group(lm, train, jobs[:1], _Discard())  # warm-up: tokenizer, kernels, dataset cache

    start = time.perf_counter()
    for job in jobs:
        train_group(lm, train, [job], _Discard(), fuse=False)
    separate = time.perf_counter() - start
    start = time.perf_counter()
    train_group(lm, train, jobs, _Discard(), fuse=False)
    shared = time.perf_counter() - start

    print(json.dumps({
        "model": args.model, "device": str(lm.device), "saes": len(jobs), "tokens_per_sae": args.tokens,
        "separate_passes_s": round(separate, 2), "shared_pass_s": round(shared, 2),
        "speedup_shared_vs_separate": round(separate / shared, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
