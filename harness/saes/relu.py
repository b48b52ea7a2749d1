"""ReLU SAE with an L1 penalty weighted by decoder-row norms (Anthropic's April 2024 update), as
SAELens's `standard` architecture trains it (sae_lens/saes/standard_sae.py `StandardTrainingSAE`).

z = ReLU(W_enc^T (x - b_dec) + b_enc), x_hat = W_dec^T z + b_dec. The decoder is unconstrained,
initialised with rows of norm 0.1 and W_enc = W_dec^T (sae.py `TrainingSAE.initialize_weights`,
`decoder_init_norm`). Loss, on activations scaled to mean norm sqrt(d_in) (harness/saes/scaled.py):
sum_d (x - x_hat)^2 averaged over tokens (`training_forward_pass`) plus
l1_coefficient * sum_i z_i ||W_dec_i|| averaged over tokens (`calculate_aux_loss`), the
coefficient rising linearly from 0 over `l1_warm_up_steps` (training/optim.py
`CoefficientScheduler`). Defaults are SAELens's: l1_coefficient 1.0, no warm-up.
"""

from __future__ import annotations

import torch

from harness.saes.base import StepContext, TrainingOutput, fraction_of_variance_unexplained
from harness.saes.scaled import ScaledTraining


def warmed_up(value: float, warm_up_steps: int, step: int) -> float:
    """SAELens's CoefficientScheduler: 0 at step 0, `value` from step `warm_up_steps` on."""
    return value * min(1.0, step / warm_up_steps) if warm_up_steps > 0 else value


class ReluSae(ScaledTraining):
    arch = "relu"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_acts(x))

    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        xs = self.scaled(x)
        latents = self.encode(xs)
        xs_hat = self.decode(latents)
        mse = (xs_hat - xs).pow(2).sum(-1).mean()
        coefficient = warmed_up(self.settings.l1_coefficient, self.settings.l1_warm_up_steps, context.step)
        l1 = (latents * self.W_dec.norm(dim=1)).sum(-1).mean()
        loss = mse + coefficient * l1
        fvu = fraction_of_variance_unexplained(xs, xs_hat)
        return TrainingOutput(loss, xs_hat / self.norm_scale, latents, fvu, {"mse": mse, "l1": l1})
