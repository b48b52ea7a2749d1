"""Benchmark: sae-bench's core-eval scoring vs a naive full-forward scorer doing SAEBench's work.

The naive scorer runs what SAEBench's core eval runs (sae_bench/evals/core/main.py), one SAE at
a time: per CE/KL batch a clean, an SAE-patched and a zero-ablated full forward with per-run
log-softmax and SAEBench's softmax-then-log KL (`get_recons_loss`), per sparsity batch a forward
stopped after the SAE's layer (`get_sparsity_and_variance_metrics`, `stop_at_layer`), feeding
the same reconstruction statistics as sae-bench (`ReconstructionStats`), so the two differ in
their forward passes only. Both scorers
see the same model, SAEs and token batches in this process, in interleaved repeats; the output
is the ratio of their times (CPU times on a CPU, wall times on a GPU: benchmarks/clock.py), and
the largest difference between their scores.

    python benchmarks/scoring.py [--model builtin:demo-base] [--layers 1,3,5] [--saes-per-layer 1]
        [--tokens 8192] [--sparsity-tokens 8192] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from benchmarks.clock import Timed, clock
from harness.activations import HookSite
from harness.evals.core import score_core
from harness.metrics import ReconstructionStats
from harness.models import LoadedModel, load_model, pick_device
from harness.saes import SparseAutoencoder, build_sae
from harness.tokens import iter_windows, special_mask
from suite.jobs import DatasetRef, EvalSettings, ModelRef, SaeSettings


class _Stop(Exception):
    pass


def _forward(lm: LoadedModel, ids: torch.Tensor, layer: int, replace=None, stop: bool = False):
    """Logits of a full forward with layer `layer`'s output replaced (or captured and stopped)."""
    seen = {}

    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        seen["act"] = hidden
        if stop:
            raise _Stop
        if replace is not None:
            new = replace(hidden)
            return (new, *output[1:]) if isinstance(output, tuple) else new
        return None

    handle = lm.layers[layer].register_forward_hook(hook)
    try:
        return lm.model(input_ids=ids, use_cache=False).logits, seen.get("act")
    except _Stop:
        return None, seen["act"]
    finally:
        handle.remove()


def _kl(original: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    p, q = torch.softmax(original, dim=-1), torch.softmax(new, dim=-1)
    return (p * (torch.log(p) - torch.log(q))).sum(-1)


def _ce(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return -torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


@torch.no_grad()
def naive_scores(lm: LoadedModel, saes: dict[str, tuple[HookSite, SparseAutoencoder]], batches: list[torch.Tensor],
                 recon_batches: int, sparsity_batches: int) -> dict[str, dict[str, float]]:
    special = lm.special_ids
    out = {}
    for key, (site, sae) in saes.items():
        sums = {"ce_clean": 0.0, "ce_zero": 0.0, "ce_sae": 0.0, "kl_zero": 0.0, "kl_sae": 0.0}
        n_ce = n_kl = 0
        for ids in batches[:recon_batches]:
            keep = ~special_mask(ids, special)

            def patch(hidden, keep=keep):
                return torch.where(keep[..., None], sae.decode(sae.encode(hidden.float())).to(hidden.dtype), hidden)

            clean, _ = _forward(lm, ids, site.layer)
            patched, _ = _forward(lm, ids, site.layer, patch)
            zero, _ = _forward(lm, ids, site.layer, torch.zeros_like)
            ce_mask = keep[:, :-1]
            for name, logits in (("clean", clean), ("sae", patched), ("zero", zero)):
                sums[f"ce_{name}"] += float(_ce(logits, ids)[ce_mask].double().sum())
            sums["kl_sae"] += float(_kl(clean, patched)[keep].double().sum())
            sums["kl_zero"] += float(_kl(clean, zero)[keep].double().sum())
            n_ce, n_kl = n_ce + int(ce_mask.sum()), n_kl + int(keep.sum())
        recon = ReconstructionStats(sae.d_sae, sae.d_in)  # the same statistics as sae-bench keeps
        for ids in batches[:sparsity_batches]:
            keep = ~special_mask(ids, special)
            _, act = _forward(lm, ids, site.layer, stop=True)
            x = act[keep].float()
            z = sae.encode(x)
            sequence = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(keep)[keep]
            recon.add(x, sae.decode(z), z, sequence)
        ce = {k: sums[k] / n_ce for k in ("ce_clean", "ce_zero", "ce_sae")}
        kl = {k: sums[k] / n_kl for k in ("kl_zero", "kl_sae")}
        out[key] = {"loss_recovered": (ce["ce_zero"] - ce["ce_sae"]) / (ce["ce_zero"] - ce["ce_clean"]),
                    "kl_score": (kl["kl_zero"] - kl["kl_sae"]) / kl["kl_zero"], **recon.result()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:demo-base")
    parser.add_argument("--layers", default="1,3,5")
    parser.add_argument("--saes-per-layer", type=int, default=1)
    parser.add_argument("--dataset", default="builtin:pyref:train")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--sparsity-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(ModelRef(args.model), pick_device(args.device))
    path, _, split = args.dataset.rpartition(":")
    ev = EvalSettings("bench", DatasetRef(path, split), tokens=args.tokens, sparsity_tokens=args.sparsity_tokens)
    recon, sparsity = ev.batches(ev.tokens), ev.batches(ev.sparsity_tokens)
    windows = iter_windows(ev.dataset, lm.tokenizer, ev.ctx_len, ev.batch_size, repeat=True)
    batches = [next(windows).to(lm.device) for _ in range(max(recon, sparsity))]
    windows.close()
    saes = {}
    for layer in (int(v) for v in args.layers.split(",")):
        for i in range(args.saes_per_layer):
            sae = build_sae(lm.d_model, SaeSettings(k=32, latents=512), torch.Generator().manual_seed(100 * layer + i))
            saes[f"L{layer}.{i}"] = (HookSite(layer), sae.to(lm.device))

    def ours():
        return {key: r.metrics for key, r in score_core(lm, saes, ev).items()}

    def naive():
        return naive_scores(lm, saes, batches, recon, sparsity)

    ours(), naive()  # warm-up (kernels, allocator, tokenizer)
    times: dict[str, list[Timed]] = {"ours": [], "naive": []}
    results = {}
    for _ in range(args.repeats):
        for name, fn in (("naive", naive), ("ours", ours)):
            with clock() as t:
                results[name] = fn()
                if lm.device.type == "cuda":
                    torch.cuda.synchronize()
            times[name].append(t)
    by = "wall" if lm.device.type == "cuda" else "cpu"  # see benchmarks/clock.py
    ratios = [getattr(o, by) / getattr(n, by) for o, n in zip(times["ours"], times["naive"])]
    wall_ratios = [o.wall / n.wall for o, n in zip(times["ours"], times["naive"])]
    worst = max(abs(results["ours"][k][m] - results["naive"][k][m])
                for k in saes for m in ("loss_recovered", "kl_score", "l0", "explained_variance", "mse"))
    print(json.dumps({
        "model": args.model, "device": lm.device_name, "threads": args.threads, "saes": len(saes),
        "layers": args.layers, "ce_kl_tokens": recon * ev.batch_tokens, "sparsity_tokens": sparsity * ev.batch_tokens,
        "clock": by, "naive_s": [round(getattr(t, by), 2) for t in times["naive"]],
        "ours_s": [round(getattr(t, by), 2) for t in times["ours"]],
        "time_ratio_ours_vs_naive": [round(r, 3) for r in ratios],
        "wall_time_ratio_ours_vs_naive": [round(r, 3) for r in wall_ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "max_abs_score_difference": worst,
    }, indent=2))


if __name__ == "__main__":
    main()
