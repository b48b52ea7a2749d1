"""SAE architectures, one module each behind `harness.saes.base.SparseAutoencoder`."""

from __future__ import annotations

import torch

from harness.saes.base import SparseAutoencoder, StepContext, TrainingOutput, geometric_median
from harness.saes.batchtopk import BatchTopKSae
from harness.saes.jumprelu import JumpReluSae
from harness.saes.matryoshka import MatryoshkaBatchTopKSae
from harness.saes.relu import ReluSae
from harness.saes.topk import TopKSae
from suite.jobs import SaeSettings

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {cls.arch: cls for cls in (TopKSae, BatchTopKSae, ReluSae, JumpReluSae, MatryoshkaBatchTopKSae)}


def build_sae(d_in: int, settings: SaeSettings, generator: torch.Generator | None = None) -> SparseAutoencoder:
    try:
        cls = ARCHITECTURES[settings.arch]
    except KeyError:
        raise ValueError(f"unknown SAE architecture {settings.arch!r}; known: {', '.join(ARCHITECTURES)}") from None
    return cls(d_in, settings, generator)


__all__ = ["ARCHITECTURES", "BatchTopKSae", "JumpReluSae", "MatryoshkaBatchTopKSae", "ReluSae", "SparseAutoencoder", "StepContext", "TopKSae", "TrainingOutput", "build_sae",
           "geometric_median"]
