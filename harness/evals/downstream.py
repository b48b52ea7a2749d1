"""CE and KL of the clean, zero-ablated and SAE-patched runs of one eval batch
(SAEBench's `get_recons_loss`, sae_bench/evals/core/main.py).

One clean forward gives the reference distribution and every site's activations. Per site, the
zero-ablated run and one run per SAE of that site are patched runs (harness.resume): they
resume at the patched layer from the clean run's residual stream and several of them share one
batched forward; a zero-ablated residual stream runs as one position, which stands for all
(`zero_run_is_one_position`). The per-token quantities are computed with the formulas of
`harness.metrics.token_ce`/`token_kl`, the log-softmax taken once per run and the clean
probabilities once per batch, so the numbers are those of one full forward per run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from harness.activations import HookSite
from harness.metrics import DownstreamStats
from harness.models import LoadedModel
from harness.resume import clean_run, patched_logits, patches_per_forward, zero_run_is_one_position
from harness.saes import SparseAutoencoder

# A patch of one site: (accumulator of its SAE or None for the zero ablation, replacement maker).
Patch = tuple[DownstreamStats | None, Callable[[], torch.Tensor]]


class _Reference:
    """The clean run's per-token quantities every patched run is compared with."""

    def __init__(self, logits: torch.Tensor, ids: torch.Tensor):
        self.ids = ids
        self.logp = torch.log_softmax(logits.float(), dim=-1)
        self.p = self.logp.exp()
        self.ce = -self.logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)

    def ce_kl(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position CE [B, T-1] and KL(clean || patched) [B, T] of one patched run; logits
        [1, 1, V] stand for every position."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        if logp.shape[:2] == (1, 1) and self.ids.shape != (1, 1):
            return -logp[0, 0][self.ids[:, 1:]], (self.p * (self.logp - logp)).sum(-1)
        ce = -logp[:, :-1].gather(-1, self.ids[:, 1:, None]).squeeze(-1)
        # (p * (clean_logp - logp)).sum(-1) in place: a + (-b) is a - b bit for bit
        return ce, logp.neg_().add_(self.logp).mul_(self.p).sum(-1)


@torch.no_grad()
def downstream_batch(lm: LoadedModel, ids: torch.Tensor, keep: torch.Tensor, sites: Sequence[HookSite],
                     saes: dict[str, tuple[HookSite, SparseAutoencoder]], stats: dict[str, DownstreamStats],
                     per_forward: int | None = None, codes: dict | None = None) -> dict[HookSite, torch.Tensor]:
    """Adds this batch's CE/KL to `stats` (key -> the SAE's accumulator); returns the clean
    activations of every site. `per_forward` caps the patched runs per forward (default: what
    `patches_per_forward` allows). `codes`, when given, receives key -> (x, latents, x_hat) of
    the non-special positions, so density and reconstruction reuse the patch's encoding."""
    clean = clean_run(lm, ids, sites)
    assert clean.logits is not None
    reference = _Reference(clean.logits, ids)
    clean.logits = None  # the reference keeps what it needs
    ce_mask, kl_mask = keep[:, :-1], keep  # the input token of the position is not special
    per_forward = per_forward or patches_per_forward(lm, ids.shape[0], ids.shape[1])
    for site in sites:
        original = clean.acts[site]
        patches: list[Patch] = []
        zero: tuple[torch.Tensor, torch.Tensor] | None = None
        if zero_run_is_one_position(lm, site):
            zero = reference.ce_kl(patched_logits(lm, ids[:1, :1], site, [original.new_zeros(1, 1, original.shape[-1])],
                                                  clean))
        else:  # every position, specials too
            patches.append((None, lambda o=original: torch.zeros_like(o)))
        for key, (sae_site, sae) in saes.items():
            if sae_site == site:
                patches.append((stats[key], lambda s=sae, o=original, k=key: _reconstruction(s, o, keep, codes, k)))
        for start in range(0, len(patches), per_forward):
            chunk = patches[start:start + per_forward]
            logits = patched_logits(lm, ids, site, [make() for _, make in chunk], clean)
            for (accumulator, _), run_logits in zip(chunk, logits.split(ids.shape[0])):
                ce, kl = reference.ce_kl(run_logits)
                if accumulator is None:
                    zero = ce, kl
                    continue
                assert zero is not None  # the zero ablation comes first
                accumulator.add(ce_mask, kl_mask, ce_clean=reference.ce, ce_zero=zero[0], ce_sae=ce,
                                kl_zero=zero[1], kl_sae=kl)
            del logits
    return clean.acts


def _reconstruction(sae: SparseAutoencoder, original: torch.Tensor, keep: torch.Tensor, codes: dict | None = None,
                    key: str = "") -> torch.Tensor:
    """The SAE's reconstruction at non-special positions; specials keep their activation. Only
    the non-special positions are encoded (what the patch uses), once for the CE/KL patch and the
    density statistics (`codes`)."""
    x = original[keep].float()
    latents = sae.encode(x)
    x_hat = sae.decode(latents)
    if codes is not None:
        codes[key] = (x, latents, x_hat)
    patched = original.clone()
    patched[keep] = x_hat.to(original.dtype)
    return patched
