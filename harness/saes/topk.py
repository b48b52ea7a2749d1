"""TopK SAE (Gao et al. 2024, as in EleutherAI sparsify's `SparseCoder`).

z = TopK(relu(W_enc^T (x - b_dec) + b_enc)), x_hat = W_dec^T z + b_dec, unit-norm decoder rows,
b_dec from the geometric median of the first batch, and AuxK: the top `aux_k` latents among those
dead for `dead_tokens` tokens reconstruct the residual, weighted by `aux_coef` (1/32) and scaled
down while fewer than `aux_k` latents are dead (sparsify/sparse_coder.py).
"""

from __future__ import annotations

import torch

from harness.saes.base import SparseAutoencoder, StepContext, TrainingOutput, UnitNormDecoder, \
    fraction_of_variance_unexplained


def keep_top_k(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Dense tensor holding each row's k largest values of `pre` and zeros elsewhere."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, values)


class TopKSae(UnitNormDecoder, SparseAutoencoder):
    arch = "topk"

    @property
    def k(self) -> int:
        return self.settings.k

    @property
    def aux_k(self) -> int:
        return self.settings.aux_k or self.d_in // 2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return keep_top_k(torch.relu(self.pre_acts(x)), self.k)

    def inference_config(self) -> dict:
        return {"k": self.k}

    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        pre = torch.relu(self.pre_acts(x))
        return fvu_with_auxk(self, x, pre, keep_top_k(pre, self.k), context)


def fvu_with_auxk(sae: SparseAutoencoder, x: torch.Tensor, pre: torch.Tensor, latents: torch.Tensor,
                  context: StepContext) -> TrainingOutput:
    """The TopK family's loss for these selected latents: FVU + aux_coef * AuxK."""
    x_hat = sae.decode(latents)
    fvu = fraction_of_variance_unexplained(x, x_hat)
    auxk = auxk_loss(sae, x, x_hat, pre, context.dead)
    return TrainingOutput(fvu + sae.settings.aux_coef * auxk, x_hat, latents, fvu, {"auxk": auxk})


def auxk_loss(sae: SparseAutoencoder, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor,
              dead: torch.Tensor | None) -> torch.Tensor:
    """Dead latents learn to reconstruct the residual x - x_hat (Gao et al. 2024, appendix A.2)."""
    if dead is None or not bool(dead.any()):
        return x.new_zeros(())
    aux_k = sae.settings.aux_k or sae.d_in // 2
    num_dead = int(dead.sum())
    dead_pre = torch.where(dead[None, :], pre, torch.zeros_like(pre))
    aux_latents = keep_top_k(dead_pre, min(aux_k, num_dead))
    residual = (x - x_hat).detach()
    residual_hat = aux_latents @ sae.W_dec  # the error is reconstructed without the bias
    scale = min(num_dead / aux_k, 1.0)
    total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)  # of the input, as sparsify
    return scale * (residual_hat - residual).pow(2).sum() / total_variance
