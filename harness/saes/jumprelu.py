"""JumpReLU SAE (Rajamanoharan et al. 2024), as SAELens trains it
(sae_lens/saes/jumprelu_sae.py `JumpReLUTrainingSAE`).

z = JumpReLU_theta(W_enc^T (x - b_dec) + b_enc) = ReLU(pre) * 1[pre > theta], with a learned
per-latent threshold theta (kept >= 0 by projection before each step, `training_forward_pass`).
The step function's gradient reaches theta through a straight-through estimator, a rectangle
kernel of width `bandwidth` (`JumpReLU`, `Step` autograd functions; DeepMind's variant: the
pre-activations get no gradient from the step). Loss, on activations scaled to mean norm
sqrt(d_in) (harness/saes/scaled.py): sum_d (x - x_hat)^2 averaged over tokens plus the L0 penalty
`l0_coefficient * L0` (SAELens's "step" mode), or, with `target_l0 > 0`, Gemma Scope 2's
`l0_coefficient * 2/target * (L0 - target)^2` ("quadratic" mode), the coefficient warmed up
linearly over `l0_warm_up_steps`. Initialisation as SAELens: decoder rows of norm 0.1, W_enc =
W_dec^T, b_enc 0, theta = `init_threshold`. Defaults are SAELens's: bandwidth 0.05, threshold
0.01, l0_coefficient 1.0, no warm-up.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.saes.base import StepContext, TrainingOutput, fraction_of_variance_unexplained
from harness.saes.relu import warmed_up
from harness.saes.scaled import ScaledTraining
from suite.jobs import SaeSettings


def rectangle(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _Step(torch.autograd.Function):
    """1[x > theta]; d/dtheta = -(1/h) rect((x - theta)/h) (jumprelu_sae.py `Step`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, threshold = ctx.saved_tensors
        ste = (1.0 / ctx.bandwidth) * rectangle((x - threshold) / ctx.bandwidth) * grad_output
        return None, -ste.sum(0), None


class _JumpReLU(torch.autograd.Function):
    """x * 1[x > theta]; d/dtheta = -(theta/h) rect((x - theta)/h) (jumprelu_sae.py `JumpReLU`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, threshold = ctx.saved_tensors
        h = ctx.bandwidth
        threshold_grad = -((threshold / h) * rectangle((x - threshold) / h) * grad_output).sum(0)
        return (x > threshold).to(x) * grad_output, threshold_grad, None


class JumpReluSae(ScaledTraining):
    arch = "jumprelu"

    def __init__(self, d_in: int, settings: SaeSettings, generator: torch.Generator | None = None):
        super().__init__(d_in, settings, generator)
        self.threshold = nn.Parameter(torch.full((self.d_sae,), float(settings.init_threshold)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """SAELens `JumpReLUSAE.encode`: relu(pre) * 1[pre > threshold]."""
        pre = self.pre_acts(x)
        return torch.relu(pre) * (pre > self.threshold).to(pre)

    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        with torch.no_grad():
            self.threshold.clamp_(min=0.0)
        xs = self.scaled(x)
        pre = self.pre_acts(xs)
        bandwidth = self.settings.bandwidth
        latents = _JumpReLU.apply(pre, self.threshold, bandwidth)
        xs_hat = self.decode(latents)
        mse = (xs_hat - xs).pow(2).sum(-1).mean()
        l0 = _Step.apply(pre, self.threshold, bandwidth).sum(-1)
        target = self.settings.target_l0
        per_token = 2 / target * (l0 - target) ** 2 if target > 0 else l0
        coefficient = warmed_up(self.settings.l0_coefficient, self.settings.l0_warm_up_steps, context.step)
        sparsity = coefficient * per_token.mean()
        fvu = fraction_of_variance_unexplained(xs, xs_hat)
        return TrainingOutput(mse + sparsity, xs_hat / self.norm_scale, latents, fvu,
                              {"mse": mse, "l0_loss": sparsity})
