"""Benchmark: fused SAE training (harness.fused) vs one SAE at a time, in one process.

Two measurements, interleaved repeats, medians of per-repeat ratios (of CPU times on a CPU, wall
times on a GPU: benchmarks/clock.py):
  steps: the SAE steps alone on activations captured once from the model (no forward pass), for
         the unfused path, the fused stack with dense decoding and the fused stack with sparse
         decoding (gathered decoder rows, sparse encoder backward): what `choose_decoder` rests on.
  grid:  the demo grid end to end (`train_group`: forward passes, buffer, SAE steps), unfused vs
         fused with the default decoder choice: SAE tokens/s before and after.

    python benchmarks/fused.py [--model builtin:demo-base] [--layers 1,3,5] [--latents 512] [--k 32]
        [--steps 6] [--tokens 40960] [--repeats 3] [--threads 1] [--skip-grid]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import harness.fused as fused
from benchmarks.clock import Timed, clock
from harness.activations import HookSite, capture
from harness.models import load_model, pick_device
from harness.tokens import iter_windows, special_mask
from harness.train import SaeTrainer, train_group
from suite.jobs import DatasetRef, Job, ModelRef, SaeRef, SaeSettings, TrainSettings


class _Quiet:
    def train_log(self, job, rows): ...


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batches(lm, train: TrainSettings, sites: list[HookSite], steps: int) -> list[dict]:
    windows = iter_windows(train.dataset, lm.tokenizer, train.ctx_len, train.batch_size, repeat=True)
    out = []
    for _ in range(steps):
        ids = next(windows)
        acts, _ = capture(lm, ids, sites)
        keep = ~special_mask(ids.to(lm.device), lm.special_ids)
        out.append({site: acts[site][keep][: train.batch_tokens - train.batch_size].float() for site in sites})
    windows.close()
    return out


def _seconds(t: Timed, device: torch.device) -> float:
    return t.wall if device.type == "cuda" else t.cpu  # see benchmarks/clock.py


def time_steps(lm, jobs: list[Job], batches: list[dict], mode: str) -> float:
    """Seconds for len(batches) SAE steps of every job, fresh SAEs each time."""
    trainers = [SaeTrainer.create(job, lm.d_model, lm.device) for job in jobs]
    sites = [HookSite(job.layer, job.sae.hook) for job in jobs]
    stack = None if mode == "unfused" else fused.FusedTopK(trainers, mode)
    _sync(lm.device)
    with clock() as t:
        for batch in batches:
            if stack is None:
                for trainer, site in zip(trainers, sites):
                    trainer.train_step(batch[site])
            else:
                stack.train_step([batch[site] for site in sites])
        _sync(lm.device)
    return _seconds(t, lm.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:demo-base")
    parser.add_argument("--layers", default="1,3,5")
    parser.add_argument("--latents", type=int, default=512)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="SAE steps per repeat in the steps benchmark")
    parser.add_argument("--tokens", type=int, default=40_960, help="tokens per SAE in the grid benchmark")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(ModelRef(args.model), pick_device(args.device))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=args.tokens, ctx_len=128, batch_size=16, lr=1e-3)
    settings = SaeSettings(k=args.k, latents=args.latents, dead_tokens=50_000)
    layers = [int(v) for v in args.layers.split(",")]
    jobs = [Job(SaeRef(lm.ref, "resid_post", layer, train, settings), True, ()) for layer in layers]
    batches = _batches(lm, train, [HookSite(layer) for layer in layers], args.steps + 1)
    warm, batches = batches[:1], batches[1:]
    modes = ("unfused", "dense", "sparse")
    for mode in modes:
        time_steps(lm, jobs, warm, mode)
    step_times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            step_times[mode].append(time_steps(lm, jobs, batches, mode))
    n_tokens = sum(next(iter(b.values())).shape[0] for b in batches) * len(jobs)
    report: dict = {
        "model": args.model, "device": lm.device_name, "threads": args.threads, "saes": len(jobs),
        "latents": args.latents, "k": args.k,
        "steps_sae_tokens_per_s": {m: round(n_tokens / statistics.median(t)) for m, t in step_times.items()},
        "steps_speedup_vs_unfused": {m: round(statistics.median(u / t for u, t in zip(step_times["unfused"], ts)), 3)
                                     for m, ts in step_times.items() if m != "unfused"},
    }
    if not args.skip_grid:
        grid: dict[str, list[float]] = {"unfused": [], "fused": []}
        train_group(lm, train, jobs[:1], _Quiet())  # warm-up: tokenizer, dataset cache, kernels
        for _ in range(args.repeats):
            for name in grid:
                with clock() as t:
                    result = train_group(lm, train, jobs, _Quiet(), fuse=name == "fused")
                grid[name].append(result.tokens * len(jobs) / _seconds(t, lm.device))
        report["grid_decoder"] = fused.choose_decoder(lm.d_model, args.latents, args.k, lm.device)
        report["grid_sae_tokens_per_s"] = {name: [round(r) for r in rates] for name, rates in grid.items()}
        report["grid_speedup_fused_vs_unfused"] = round(statistics.median(
            f / u for f, u in zip(grid["fused"], grid["unfused"])), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
