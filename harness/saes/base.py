"""The interface every SAE architecture implements, one architecture per module.

Parameters use SAELens's names and orientation (`W_enc [d_in, d_sae]`, `b_enc [d_sae]`,
`W_dec [d_sae, d_in]`, `b_dec [d_in]`; sae_lens/saes/sae.py), so a checkpoint is a SAELens
directory as it is and conversion to other layouts is a transpose in one place. Weights are fp32
whatever the model's dtype. Inference is `encode` (dense latents) and `decode`; training asks the
architecture for its loss (`training_loss`) and lets it keep its own constraints before and after
each optimizer step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from suite.jobs import SaeSettings


@dataclass
class StepContext:
    """What a training step may depend on besides the batch."""

    step: int  # 0-based optimizer step
    total_steps: int  # planned steps (for warm-ups expressed as a share of training)
    dead: torch.Tensor | None = None  # [d_sae] bool: latents silent for `dead_tokens` tokens


@dataclass
class TrainingOutput:
    loss: torch.Tensor  # the scalar to minimise
    x_hat: torch.Tensor
    latents: torch.Tensor  # [n, d_sae] dense codes as used for the reconstruction
    fvu: torch.Tensor  # fraction of variance unexplained on the batch (detached where logged)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named loss terms, for logs


def fraction_of_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """sum |x - x_hat|^2 / sum |x - mean(x)|^2 over the batch (sparsify's FVU)."""
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


def geometric_median(points: torch.Tensor, iterations: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: a centre of the data less pulled by outlier tokens than the mean."""
    guess = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1 / torch.linalg.vector_norm(points - guess, dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if torch.linalg.vector_norm(new - guess) < eps:
            return new
        guess = new
    return guess


class SparseAutoencoder(nn.Module, ABC):
    """x_hat = decode(encode(x)); `encode` returns dense latents [..., d_sae]."""

    arch: ClassVar[str]

    def __init__(self, d_in: int, settings: SaeSettings, generator: torch.Generator | None = None):
        super().__init__()
        self.d_in = d_in
        self.d_sae = settings.latents
        self.settings = settings
        self.W_enc = nn.Parameter(torch.empty(d_in, self.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.W_dec = nn.Parameter(torch.empty(self.d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.reset_parameters(generator)

    @property
    def d_model(self) -> int:
        return self.d_in

    def reset_parameters(self, generator: torch.Generator | None) -> None:
        """Tied init (W_enc = W_dec^T) with unit-norm decoder rows, as sparsify and Gao et al."""
        w = torch.empty(self.d_sae, self.d_in)
        nn.init.kaiming_uniform_(w, a=5 ** 0.5, generator=generator)
        with torch.no_grad():
            self.W_dec.copy_(w / torch.linalg.vector_norm(w, dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)

    # ------------------------------------------------------------------ inference

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents [..., d_sae] (zeros where inactive)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def inference_config(self) -> dict:
        """Architecture-specific keys a SAELens config needs to run this SAE (e.g. `k`)."""
        return {}

    # ------------------------------------------------------------------ training

    @abstractmethod
    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        """The loss of one batch [n, d_in] of fp32 activations."""

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the first training batch (default: b_dec from the
        geometric median, as sparsify)."""
        self.b_dec.copy_(geometric_median(x.float()))

    def before_optimizer_step(self) -> None:
        """Adjust gradients (e.g. keep unit-norm decoder rows on the sphere)."""

    def after_optimizer_step(self) -> None:
        """Restore constraints after the step (e.g. renormalise decoder rows)."""

    def finalize(self) -> None:
        """After the last step: anything inference needs that training estimated."""


class UnitNormDecoder:
    """Mixin: decoder rows of unit norm, the gradient component along each row removed so Adam
    moves rows on the sphere (sparsify's `remove_gradient_parallel_to_decoder_directions`)."""

    W_dec: nn.Parameter

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True).clamp_min(1e-8)

    def before_optimizer_step(self) -> None:
        self.remove_parallel_grad()

    def after_optimizer_step(self) -> None:
        self.normalize_decoder()
