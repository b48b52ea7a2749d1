"""Scoring: SAEBench core metrics for every SAE of a group on every eval dataset.

Per eval batch: one clean forward (captures all layers, gives CE and the reference
distribution), one zero-ablated forward per layer (shared by that layer's SAEs) and one
SAE-patched forward per SAE. Special-token positions (BOS/EOS) keep their original activations
in every patched run and are left out of the reconstruction metrics.
"""

from __future__ import annotations

import torch
from rich.progress import Progress

from harness.activations import capture, patched
from harness.metrics import DownstreamStats, ReconstructionStats, token_ce, token_kl
from harness.models import LoadedModel
from harness.saes import SparseAutoencoder
from harness.tokens import DatasetLoadError, iter_windows, special_mask
from suite.jobs import EvalSettings

Scores = dict[str, dict[str, float]]  # eval name -> metric -> value
Intervals = dict[str, dict[str, tuple[float, float]]]  # eval name -> metric -> 95% interval


@torch.no_grad()
def evaluate(lm: LoadedModel, saes: dict[str, tuple[int, SparseAutoencoder]], evals: tuple[EvalSettings, ...],
             ctx_len: int, batch_size: int, progress: Progress | None = None
             ) -> tuple[dict[str, Scores], dict[str, Intervals]]:
    """`saes` maps a job key to (layer, SAE); returns job key -> eval name -> metrics, and the
    bootstrap intervals (resampling eval sequences) of the metrics that are token means."""
    results: dict[str, Scores] = {key: {} for key in saes}
    intervals: dict[str, Intervals] = {key: {} for key in saes}
    layers = sorted({layer for layer, _ in saes.values()})
    for ev in evals:
        recon = {key: ReconstructionStats(sae.settings.latents, sae.d_model) for key, (_, sae) in saes.items()}
        down = {key: DownstreamStats() for key in saes}
        task = progress.add_task(f"scoring on {ev.name} ({lm.ref.name})", total=ev.tokens) if progress else None
        scored = 0
        windows = iter_windows(ev.dataset, lm.tokenizer, ctx_len, batch_size)
        for input_ids in windows:
            ids = input_ids.to(lm.device)
            special = special_mask(ids, lm.special_ids)
            keep = ~special
            sequence = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)[keep]
            acts, logits = capture(lm, ids, layers, stop_early=False)
            clean_logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            ce_clean = token_ce(logits, ids)
            positions = torch.ones_like(ce_clean, dtype=torch.bool)
            for layer in layers:
                with patched(lm, layer, lambda h: torch.where(special[..., None], h, torch.zeros_like(h))):
                    zero_logits = lm.model(input_ids=ids, use_cache=False).logits
                ce_zero, kl_zero = token_ce(zero_logits, ids), token_kl(clean_logp, zero_logits)
                del zero_logits
                x = acts[layer][keep].float()  # once per layer, shared by its SAEs
                for key, (sae_layer, sae) in saes.items():
                    if sae_layer != layer:
                        continue
                    latents = sae.encode(x)
                    x_hat = sae.decode(latents)
                    recon[key].add(x, x_hat, latents, sequence)
                    replacement = acts[layer].clone()
                    replacement[keep] = x_hat.to(replacement.dtype)
                    with patched(lm, layer, lambda h: replacement):
                        sae_logits = lm.model(input_ids=ids, use_cache=False).logits
                    down[key].add(positions, ce_clean=ce_clean, ce_zero=ce_zero, kl_zero=kl_zero,
                                  ce_sae=token_ce(sae_logits, ids), kl_sae=token_kl(clean_logp, sae_logits))
            scored += int(keep.sum())
            if progress is not None:
                progress.update(task, completed=min(scored, ev.tokens))
            if scored >= ev.tokens:
                break
        windows.close()
        if scored == 0:
            raise DatasetLoadError(f"eval dataset {ev.name} ({ev.dataset.label()}) yielded no tokens")
        for key in saes:
            results[key][ev.name] = {**recon[key].result(), **down[key].result()}
            intervals[key][ev.name] = {**recon[key].intervals(), **down[key].intervals()}
    return results, intervals
