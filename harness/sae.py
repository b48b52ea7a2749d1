"""TopK sparse autoencoder (Gao et al. 2024; as in EleutherAI sparsify).

z = TopK(relu(W_enc (x - b_dec) + b_enc)),  x_hat = W_dec^T z + b_dec,
decoder rows kept at unit norm, b_dec initialised to the geometric median of the first batch,
AuxK loss reconstructing the residual from the top `aux_k` latents that have been dead for
`dead_tokens` tokens. Weights are fp32 whatever the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from suite.jobs import SaeSettings


@dataclass
class SaeOutput:
    x_hat: torch.Tensor
    latents: torch.Tensor  # dense [n, latents], zeros except the top k
    pre_acts: torch.Tensor
    fvu: torch.Tensor
    auxk_loss: torch.Tensor


def geometric_median(points: torch.Tensor, iterations: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: robust centre of the data, less pulled by outlier tokens than the mean."""
    guess = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1 / torch.linalg.vector_norm(points - guess, dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if torch.linalg.vector_norm(new - guess) < eps:
            return new
        guess = new
    return guess


class TopKSae(nn.Module):
    def __init__(self, d_model: int, settings: SaeSettings, generator: torch.Generator | None = None):
        super().__init__()
        self.d_model = d_model
        self.settings = settings
        self.k = settings.k
        self.aux_k = settings.aux_k or d_model // 2
        w = torch.empty(settings.latents, d_model)
        nn.init.kaiming_uniform_(w, a=5 ** 0.5, generator=generator)
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(settings.latents))
        self.W_dec = nn.Parameter(w / torch.linalg.vector_norm(w, dim=1, keepdim=True))
        self.b_dec = nn.Parameter(torch.zeros(d_model))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense TopK latents, pre-activations)."""
        pre = torch.relu((x - self.b_dec) @ self.W_enc.T + self.b_enc)
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, values), pre

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    def loss(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> SaeOutput:
        latents, pre = self.encode(x)
        x_hat = self.decode(latents)
        residual = x - x_hat
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = residual.pow(2).sum() / total_variance
        auxk_loss = x.new_zeros(())
        if dead is not None and dead.any():
            num_dead = int(dead.sum())
            k_aux = min(self.aux_k, num_dead)
            dead_pre = torch.where(dead[None, :], pre, torch.zeros_like(pre))
            values, indices = dead_pre.topk(k_aux, dim=-1, sorted=False)
            aux_latents = torch.zeros_like(pre).scatter_(-1, indices, values)
            residual_hat = aux_latents @ self.W_dec  # reconstruct the error, no bias
            scale = min(num_dead / self.aux_k, 1.0)
            auxk_loss = scale * (residual_hat - residual.detach()).pow(2).sum() / total_variance
        return SaeOutput(x_hat, latents, pre, fvu, auxk_loss)

    @torch.no_grad()
    def init_b_dec(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(geometric_median(x.float()))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the decoder-gradient component along each unit row: Adam then moves rows on the sphere."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True).clamp_min(1e-8)
