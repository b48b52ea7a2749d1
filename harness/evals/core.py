"""SAEBench's core eval on one dataset, for every SAE of a model at once.

Per batch of eval windows (`ctx_len` tokens, BOS-led, documents joined with EOS):
- CE/KL batches (the first `tokens`): one clean forward (captures every hooked site, gives the
  reference distribution), one zero-ablated run per site (shared by that site's SAEs) and one
  SAE-patched run per SAE (`get_recons_loss` in sae_bench/evals/core/main.py); the patched runs
  resume at the patched layer and share batched forwards (harness.evals.downstream);
- sparsity batches (the first `sparsity_tokens`, from the stream's start again): the SAEs'
  codes and reconstructions of the non-special tokens (`get_sparsity_and_variance_metrics`).
  Where a batch is also a CE/KL batch its clean activations and the SAEs' encodings made for
  the patches are reused (the same tokens give the same activations and codes), otherwise a
  forward runs only up to the deepest hooked site.
"""

from __future__ import annotations

import hashlib
import time

import torch
from rich.progress import Progress

from harness.activations import HookSite, capture
from harness.evals.downstream import downstream_batch
from harness.metrics import DownstreamStats, ReconstructionStats
from harness.models import LoadedModel
from harness.saes import SparseAutoencoder
from harness.tokens import DatasetLoadError, iter_windows, special_mask
from suite.jobs import EvalSettings, ScoreResult

ScoredSae = tuple[HookSite, SparseAutoencoder]


class _SaeAccumulators:
    def __init__(self, sae: SparseAutoencoder):
        self.down = DownstreamStats()
        self.recon = ReconstructionStats(sae.d_sae, sae.d_in)


@torch.no_grad()
def score_core(lm: LoadedModel, saes: dict[str, ScoredSae], ev: EvalSettings,
               progress: Progress | None = None) -> dict[str, ScoreResult]:
    """`saes` maps a key to (site, SAE); returns key -> the eval's score of that SAE."""
    start = time.perf_counter()
    sites = sorted({site for site, _ in saes.values()})
    acc = {key: _SaeAccumulators(sae) for key, (_, sae) in saes.items()}
    recon_batches, sparsity_batches = ev.batches(ev.tokens), ev.batches(ev.sparsity_tokens)
    total = max(recon_batches, sparsity_batches)
    task = progress.add_task(f"scoring on {ev.name} ({lm.ref.name or lm.ref.id})", total=total) if progress else None
    fingerprint = hashlib.sha256()
    special_ids = lm.special_ids
    done = 0
    windows = iter_windows(ev.dataset, lm.tokenizer, ev.ctx_len, ev.batch_size)
    try:
        for index, input_ids in enumerate(windows):
            if index >= total:
                break
            fingerprint.update(input_ids.numpy().astype("int64").tobytes())
            ids = input_ids.to(lm.device)
            keep = ~special_mask(ids, special_ids)
            codes: dict = {}  # the patches' encodings, reused by the density statistics
            if index < recon_batches:
                acts = downstream_batch(lm, ids, keep, sites, saes, {key: a.down for key, a in acc.items()},
                                        codes=codes if index < sparsity_batches else None)
            else:
                acts, _ = capture(lm, ids, sites)
            if index < sparsity_batches:
                _sparsity_batch(acts, keep, saes, acc, codes)
            done += 1
            if progress is not None:
                progress.update(task, completed=done)
    finally:
        windows.close()
    if done == 0:
        raise DatasetLoadError(f"eval dataset {ev.name} ({ev.dataset.label()}) yielded no windows of "
                               f"{ev.ctx_len} tokens")
    seconds = time.perf_counter() - start
    warning = None
    if done < total:
        warning = (f"the dataset ended after {done} of {total} batches of {ev.batch_size} x {ev.ctx_len} tokens "
                   f"(CE/KL on {min(done, recon_batches)}, density on {min(done, sparsity_batches)}): the budget "
                   f"asked for more than {ev.dataset.label()} holds")
    results = {}
    for key, a in acc.items():
        results[key] = ScoreResult(
            metrics={**a.recon.result(), **a.down.result()},
            intervals={**a.recon.intervals(), **a.down.intervals()},
            density=a.recon.density_histogram(), seconds=seconds,
            dataset_fingerprint=fingerprint.hexdigest(), device_name=lm.device_name, warning=warning)
    return results


def _sparsity_batch(acts: dict, keep: torch.Tensor, saes: dict[str, ScoredSae],
                    acc: dict[str, _SaeAccumulators], codes: dict | None = None) -> None:
    sequence = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]
    cast: dict[HookSite, torch.Tensor] = {}
    for key, (site, sae) in saes.items():
        if codes and key in codes:  # encoded for this batch's CE/KL patch already
            x, latents, x_hat = codes[key]
            acc[key].recon.add(x, x_hat, latents, sequence)
            continue
        if site not in cast:
            cast[site] = acts[site][keep].float()  # once per site, shared by its SAEs
        x = cast[site]
        latents = sae.encode(x)
        acc[key].recon.add(x, sae.decode(latents), latents, sequence)
