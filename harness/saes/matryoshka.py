"""Matryoshka BatchTopK SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka
Sparse Autoencoders"), as SAELens trains it (sae_lens/saes/matryoshka_batchtopk_sae.py
`MatryoshkaBatchTopKTrainingSAE`).

A BatchTopK SAE (harness/saes/batchtopk.py) whose latents are nested prefixes of increasing width
w_1 < w_2 < ... < w_m = latents: besides the full reconstruction, each prefix of the kept latents
must reconstruct the input on its own (`_iterable_decode`, `training_forward_pass`: every inner
level's squared error is added to the loss, unweighted), so early latents learn general features
and later ones refinements rather than absorbing them. Our losses are FVUs (the squared error over
the batch's variance, as our TopK), so the sum keeps SAELens's weighting. AuxK as BatchTopK's
(SAELens's default, `use_matryoshka_aux_loss = False`). Inference is BatchTopK's: JumpReLU with
the threshold estimated in training, saved for SAELens as `jumprelu`.

Widths: no reference ships a default (SAELens requires `matryoshka_widths`, dictionary_learning
`MatryoshkaBatchTopKTrainer` requires `group_fractions`). Ours when none are given, so
`arch = "matryoshka_batchtopk"` with k and latents alone trains: doubling groups of 1/32, 1/16, 1/8
and 1/4 of the latents, then the rest (prefix widths 1/32, 3/32, 7/32, 15/32, all), our choice.
"""

from __future__ import annotations

import torch

from harness.saes.base import StepContext, TrainingOutput, fraction_of_variance_unexplained
from harness.saes.batchtopk import BatchTopKSae, batch_top_k
from harness.saes.topk import auxk_loss

DEFAULT_GROUP_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4)  # then the rest


def prefix_widths(latents: int, widths: tuple[int, ...]) -> tuple[int, ...]:
    """The nested widths, ending at `latents` (SAELens appends it when missing)."""
    if not widths:
        total, widths = 0.0, ()
        for fraction in DEFAULT_GROUP_FRACTIONS:
            total += fraction
            widths += (max(1, round(latents * total)),)
    widths = tuple(w for w in widths if w < latents)
    return tuple(sorted(set(widths))) + (latents,)


class MatryoshkaBatchTopKSae(BatchTopKSae):
    arch = "matryoshka_batchtopk"

    @property
    def widths(self) -> tuple[int, ...]:
        return prefix_widths(self.d_sae, self.settings.matryoshka_widths)

    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        pre = torch.relu(self.pre_acts(x))
        latents = batch_top_k(pre, self.k)
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        decoded = self.b_dec.expand_as(x)
        inner = []
        start = 0
        for width in self.widths:
            decoded = decoded + latents[:, start:width] @ self.W_dec[start:width]
            inner.append((x - decoded).pow(2).sum() / total_variance)
            start = width
        x_hat = decoded
        fvu = fraction_of_variance_unexplained(x, x_hat)
        auxk = auxk_loss(self, x, x_hat, pre, context.dead)
        self._update_threshold(latents.detach(), context)
        loss = torch.stack(inner).sum() + self.settings.aux_coef * auxk
        parts = {"auxk": auxk, **{f"fvu_{w}": v for w, v in zip(self.widths[:-1], inner[:-1])}}
        return TrainingOutput(loss, x_hat, latents, fvu, parts)
