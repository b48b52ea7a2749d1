"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"), trained as SAELens
(sae_lens/saes/batchtopk_sae.py `BatchTopKTrainingSAE`) and dictionary_learning
(dictionary_learning/trainers/batch_top_k.py `BatchTopKSAE`) do.

Training keeps the k x n largest ReLU pre-activations of a batch of n tokens (`BatchTopK.forward`),
so k is the mean number of active latents per token and tokens share a budget. Everything else is
our TopK SAE's (harness/saes/topk.py): unit-norm decoder rows, b_dec from the geometric median,
FVU plus AuxK on dead latents. Inference cannot depend on the batch, so a threshold theta is
estimated during training as an exponential moving average of the smallest kept activation of
each batch (`update_topk_threshold`, rate `threshold_lr`, SAELens's 0.01). SAELens starts the
average at 0 from the first step, which biases short runs low; dictionary_learning starts it at
step 1000 (`threshold_start_step`) from that step's value, skipping the untrained SAE's values.
We start at step min(1000, total_steps // 2) and average the values seen since then evenly until
there are 1/rate of them (then the moving average), so a run of any length ends with a threshold
that reflects its trained SAE. Inference is JumpReLU with that one threshold:
z = ReLU(pre) * 1[pre > theta], which is how SAELens saves a BatchTopK SAE for inference
(`process_state_dict_for_saving_inference`: a `jumprelu` SAE whose per-latent threshold is theta).
theta is a buffer, so it is in the checkpoint.
"""

from __future__ import annotations

import torch

from harness.saes.base import SparseAutoencoder, StepContext, TrainingOutput, UnitNormDecoder
from harness.saes.topk import fvu_with_auxk
from suite.jobs import SaeSettings

THRESHOLD_START_STEP = 1000  # dictionary_learning BatchTopKTrainer threshold_start_step


def batch_top_k(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k * n largest values of the non-negative [n, d_sae] `pre` over the whole batch."""
    flat = pre.flatten()
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    return torch.zeros_like(flat).scatter_(-1, indices, values).reshape(pre.shape)


class BatchTopKSae(UnitNormDecoder, SparseAutoencoder):
    arch = "batchtopk"
    threshold: torch.Tensor

    def __init__(self, d_in: int, settings: SaeSettings, generator: torch.Generator | None = None):
        super().__init__(d_in, settings, generator)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet
        self.threshold_updates = 0

    @property
    def k(self) -> int:
        return self.settings.k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_acts(x)
        return torch.relu(pre) * (pre > self.threshold.clamp_min(0)).to(pre)

    def training_loss(self, x: torch.Tensor, context: StepContext) -> TrainingOutput:
        pre = torch.relu(self.pre_acts(x))
        latents = batch_top_k(pre, self.k)
        output = fvu_with_auxk(self, x, pre, latents, context)
        self._update_threshold(latents.detach(), context)
        return output

    @torch.no_grad()
    def _update_threshold(self, latents: torch.Tensor, context: StepContext) -> None:
        """From step min(THRESHOLD_START_STEP, half the run) on: a running mean of the smallest
        active latent (dictionary_learning's BatchTopK threshold)."""
        if context.step < min(THRESHOLD_START_STEP, context.total_steps // 2):
            return
        positive = latents[latents > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min()
        self.threshold_updates += 1
        rate = max(self.settings.threshold_lr, 1 / self.threshold_updates)
        self.threshold.copy_((1 - rate) * self.threshold.clamp_min(0) + rate * smallest)

    @torch.no_grad()
    def finalize(self) -> None:
        self.threshold.clamp_(min=0.0)  # never estimated (no active latent seen): plain ReLU
