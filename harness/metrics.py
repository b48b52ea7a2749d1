"""SAEBench core metrics, accumulated over eval batches in float64.

Inputs are only the non-special tokens (BOS/EOS excluded by the caller). Reconstruction metrics
need x and x_hat; downstream metrics need per-token CE and KL of the clean, zero-ablated and
SAE-patched runs. Formulas are in docs and in `suite.catalog`.
"""

from __future__ import annotations

import math

import torch


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when undefined (e.g. an SAE that outputs nothing)."""
    return numerator / denominator if denominator != 0 else math.nan


def loss_recovered(ce_clean: float, ce_zero: float, ce_sae: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean); NaN when zero-ablation costs nothing."""
    return _ratio(ce_zero - ce_sae, ce_zero - ce_clean)


def kl_score(kl_zero: float, kl_sae: float) -> float:
    """(KL_zero - KL_sae) / KL_zero."""
    return _ratio(kl_zero - kl_sae, kl_zero)


def token_ce(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position [B, T-1] (position t predicts token t+1)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:, None].to(logits.device)).squeeze(-1)


def token_kl(clean_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(clean || patched) per position [B, T-1] from clean log-probs and patched logits."""
    patched_logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return (clean_logp.exp() * (clean_logp - patched_logp)).sum(-1)


class ReconstructionStats:
    """Sums for l0, dead_fraction, explained variance (global and legacy), mse, cossim and bias."""

    def __init__(self, latents: int, d_model: int):
        self.n = 0
        self.d_model = d_model
        self.fired = torch.zeros(latents, dtype=torch.bool)
        self.l0_sum = 0.0
        self.sse = 0.0  # sum |x - x_hat|^2
        self.x_sum = torch.zeros(d_model, dtype=torch.float64)
        self.x_sq_sum = 0.0  # sum |x|^2
        self.ev_legacy_sum = 0.0
        self.cos_sum = 0.0
        self.xhat_sq_sum = 0.0
        self.x_dot_xhat_sum = 0.0

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor) -> None:
        """One batch of [n, d] activations, reconstructions and [n, latents] codes."""
        x, x_hat = x.double(), x_hat.double()
        err = (x - x_hat).pow(2).sum(-1)
        self.n += x.shape[0]
        self.fired |= (latents != 0).any(0).cpu()
        self.l0_sum += float((latents != 0).sum())
        self.sse += float(err.sum())
        self.x_sum += x.sum(0).cpu()
        self.x_sq_sum += float(x.pow(2).sum())
        batch_total = (x - x.mean(0)).pow(2).sum(-1)
        self.ev_legacy_sum += float((1 - err / batch_total).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).sum())
        self.xhat_sq_sum += float(x_hat.pow(2).sum())
        self.x_dot_xhat_sum += float((x * x_hat).sum())

    def result(self) -> dict[str, float]:
        n = self.n
        mean = self.x_sum / n
        total = self.x_sq_sum - n * float(mean.pow(2).sum())  # sum |x - mean|^2
        return {
            "l0": self.l0_sum / n,
            "dead_fraction": 1 - float(self.fired.float().mean()),
            "explained_variance": 1 - _ratio(self.sse, total),
            "explained_variance_legacy": self.ev_legacy_sum / n,
            "mse": self.sse / (n * self.d_model),
            "cossim": self.cos_sum / n,
            "relative_reconstruction_bias": _ratio(self.xhat_sq_sum, self.x_dot_xhat_sum),
            "eval_tokens": float(n),
        }


class DownstreamStats:
    """Mean CE of clean / zero / SAE runs and mean KL of zero / SAE runs over scored positions."""

    def __init__(self):
        self.sums = {"ce_clean": 0.0, "ce_zero": 0.0, "ce_sae": 0.0, "kl_zero": 0.0, "kl_sae": 0.0}
        self.count = 0

    def add(self, mask: torch.Tensor, **per_token: torch.Tensor) -> None:
        """`mask` [B, T-1] selects scored positions; keyword tensors are per-token values."""
        self.count += int(mask.sum())
        for name, values in per_token.items():
            self.sums[name] += float(values[mask].double().sum())

    def result(self) -> dict[str, float]:
        means = {name: total / self.count for name, total in self.sums.items()}
        return {
            **means,
            "loss_recovered": loss_recovered(means["ce_clean"], means["ce_zero"], means["ce_sae"]),
            "kl_score": kl_score(means["kl_zero"], means["kl_sae"]),
        }
