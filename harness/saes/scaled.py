"""Training on activations scaled to a mean norm of sqrt(d_in), folded into the weights at the end.

Penalty coefficients (L1, L0) and JumpReLU thresholds and bandwidths only mean the same thing on
every model if the activations have a known scale. SAELens's `normalize_activations =
"expected_average_only_in"` and dictionary_learning (which trained SAEBench's baselines) scale
inputs by `sqrt(d_in) / mean ||x||`, estimated once before training
(sae_lens/training/activations_store.py `estimate_norm_scaling_factor`), train on the scaled
activations, and at the end fold the factor into the weights so the saved SAE reads raw
activations (sae_lens/saes/sae.py `TrainingSAE.fold_activation_norm_scaling_factor`:
W_enc *= s, W_dec /= s, b_dec /= s). We do the same: `init_from_batch` estimates `s` from the first
batch, the parameters live in scaled units during training, and `finalize` folds.

The architectures trained this way (relu, jumprelu) follow SAELens, its initialisation included:
decoder rows of norm `DECODER_INIT_NORM`, W_enc = W_dec^T.
"""

from __future__ import annotations

import torch

from harness.saes.base import SparseAutoencoder, geometric_median
from suite.jobs import SaeSettings

DECODER_INIT_NORM = 0.1  # sae_lens TrainingSAEConfig.decoder_init_norm


class ScaledTraining(SparseAutoencoder):
    """Parameters in scaled units until `finalize`; `encode`/`decode` read raw activations after it."""

    norm_scale: torch.Tensor

    def __init__(self, d_in: int, settings: SaeSettings, generator: torch.Generator | None = None):
        super().__init__(d_in, settings, generator)
        # not saved: after `finalize` the weights read raw activations
        self.register_buffer("norm_scale", torch.ones(()), persistent=False)

    def reset_parameters(self, generator: torch.Generator | None) -> None:
        """SAELens's init: the base's unit-norm rows scaled to `DECODER_INIT_NORM`, W_enc = W_dec^T."""
        super().reset_parameters(generator)
        with torch.no_grad():
            self.W_dec.mul_(DECODER_INIT_NORM)
            self.W_enc.copy_(self.W_dec.T)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor) -> None:
        x = x.float()
        scale = self.d_in ** 0.5 / torch.linalg.vector_norm(x, dim=-1).mean().clamp_min(1e-12)
        self.norm_scale.copy_(scale)
        self.b_dec.copy_(geometric_median(x * scale))

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.norm_scale

    @torch.no_grad()
    def finalize(self) -> None:
        """Fold the scale into the weights (SAELens `fold_activation_norm_scaling_factor`)."""
        scale = float(self.norm_scale)
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)
        self.norm_scale.fill_(1.0)
