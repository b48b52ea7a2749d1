"""Benchmark: training tokens/s vs forward-only tokens/s of the same model, layers and windows.

The forward pass that produces the activations is the physical limit of training: sae-bench
cannot train faster than the model runs. The training arm is `train_group` (forward passes that
stop after the deepest layer, special positions dropped, the shuffle buffer, every SAE's steps);
the forward-only arm runs exactly the windows the training arm forwarded through the same
capture, mask and buffer, with no SAE step. Arms alternate in one process; the ratio
forward seconds / training seconds (= training tokens/s / forward-only tokens/s on the same
windows) is reported per repeat and as the median, of CPU times on a CPU (benchmarks/clock.py)
and of wall times on a GPU. 1.0 would be training for free.

    python benchmarks/train_vs_forward.py                       # the demo grid
    python benchmarks/train_vs_forward.py --model ~/.cache/sae-bench/gguf/<dir> --layers 4,9,15,21,26 \\
        --latents 400 --ctx-len 256 --batch-size 8 --tokens 16384   # SmolLM2-135M, the reference SAEs
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from benchmarks.clock import Timed, clock
from harness.activations import HookSite, ShuffleBuffer, capture
from harness.models import LoadedModel, load_model, pick_device
from harness.tokens import iter_windows, special_mask
from harness.train import GroupTraining, train_group
from suite.jobs import DatasetRef, Job, ModelRef, SaeRef, SaeSettings, TrainSettings


class Quiet:
    def train_log(self, job, rows): ...


def sync(lm: LoadedModel) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize()


def make_jobs(lm: LoadedModel, train: TrainSettings, layers: list[int], settings: SaeSettings) -> list[Job]:
    return [Job(SaeRef(lm.ref, "resid_post", layer, train, settings), True, ()) for layer in layers]


def forward_only(lm: LoadedModel, train: TrainSettings, layers: list[int], windows: int) -> None:
    """Forward `windows` windows of the training stream through what training does to them
    (capture up to the deepest layer, mask, shuffle buffer), without SAE steps."""
    sites = [HookSite(layer) for layer in layers]
    buffer = ShuffleBuffer(train.buffer_batches * train.batch_tokens, train.batch_tokens,
                           torch.Generator().manual_seed(train.seed))
    stream = iter_windows(train.dataset, lm.tokenizer, train.ctx_len, train.batch_size, repeat=True)
    try:
        for _, input_ids in zip(range(windows), stream):
            with torch.inference_mode():  # as train_group runs it
                acts, _ = capture(lm, input_ids, sites)
            keep = ~special_mask(input_ids.to(lm.device), lm.special_ids)
            for _batch in buffer.add({site: acts[site][keep] for site in sites}):
                pass
    finally:
        stream.close()
    sync(lm)


def measure(lm: LoadedModel, train: TrainSettings, layers: list[int], settings: SaeSettings,
            repeats: int) -> dict:
    jobs = make_jobs(lm, train, layers, settings)
    warm = replace(train, tokens=min(train.tokens, 4 * train.batch_tokens))
    train_group(lm, warm, make_jobs(lm, warm, layers, settings), Quiet())  # warm-up: tokenizer, dataset, kernels
    trained: list[Timed] = []
    forwarded: list[Timed] = []
    group: GroupTraining | None = None
    for _ in range(repeats):
        with clock() as t:
            group = train_group(lm, train, jobs, Quiet())
            sync(lm)
        assert not any(g.failure for g in group.trainers), [g.failure for g in group.trainers]
        trained.append(t)
        with clock() as f:
            forward_only(lm, train, layers, group.windows)
        forwarded.append(f)
    assert group is not None
    window_tokens = group.windows * train.batch_tokens
    by = "wall" if lm.device.type == "cuda" else "cpu"  # see benchmarks/clock.py
    ratios = {kind: [getattr(f, kind) / getattr(t, kind) for f, t in zip(forwarded, trained)] for kind in ("cpu", "wall")}
    return {
        "model": lm.ref.id, "device": lm.device_name, "dtype": lm.loaded_dtype, "threads": torch.get_num_threads(),
        "layers": layers, "saes": len(jobs), "latents": settings.latents, "k": settings.k,
        "window": f"{train.batch_size}x{train.ctx_len}", "windows": group.windows, "sae_tokens_each": group.tokens,
        "clock": by,
        "training_tokens_per_s": [round(window_tokens / getattr(t, by)) for t in trained],
        "forward_only_tokens_per_s": [round(window_tokens / getattr(f, by)) for f in forwarded],
        "training_vs_forward_only_cpu": [round(r, 3) for r in ratios["cpu"]],
        "training_vs_forward_only_wall": [round(r, 3) for r in ratios["wall"]],
        "median_ratio": round(statistics.median(ratios[by]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:demo-base", help="built-in name, hub id or local HF folder")
    parser.add_argument("--layers", default="1,3,5")
    parser.add_argument("--latents", type=int, default=512)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=40_960, help="tokens each SAE trains on")
    parser.add_argument("--ctx-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(ModelRef(args.model), pick_device(args.device))
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=args.tokens, ctx_len=args.ctx_len,
                          batch_size=args.batch_size, lr=1e-3)
    settings = SaeSettings(k=args.k, latents=args.latents, dead_tokens=50_000)
    print(json.dumps(measure(lm, train, [int(v) for v in args.layers.split(",")], settings, args.repeats), indent=2))


if __name__ == "__main__":
    main()
