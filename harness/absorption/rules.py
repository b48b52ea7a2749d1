"""Step 5 of the eval: per word, how much of the ground-truth probe's projection is carried by
absorbing latents instead of the letter's main latents (absorption fraction), and whether one
aligned latent replaced the main latents entirely (full absorption).

Both follow `FeatureAbsorptionCalculator.calculate_absorption` and `_is_full_absorption` in
SAEBench's sae_bench/evals/absorption/feature_absorption_calculator.py, with the thresholds of
sae_bench/evals/absorption/feature_absorption.py (module constants there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# feature_absorption_calculator.py: EPS (a main latent "fired" when its activation is >= EPS)
EPS = 1e-8
# feature_absorption.py: ABSORPTION_FRACTION_PROBE_COS_THRESHOLD (absorption fraction only)
ABSORPTION_FRACTION_COS_THRESHOLD = 0.1
# feature_absorption.py: FULL_ABSORPTION_PROBE_COS_THRESHOLD (full absorption only)
FULL_ABSORPTION_COS_THRESHOLD = 0.025
# feature_absorption.py: ABSORPTION_PROBE_PROJECTION_PROPORTION_THRESHOLD (both metrics)
PROJECTION_PROPORTION_THRESHOLD = 0.4
# feature_absorption.py: ABSORPTION_FRACTION_MAX_ABSORBING_LATENTS
MAX_ABSORBING_LATENTS = 3
# FeatureAbsorptionCalculator.topk_feats
TOP_FEATURES = 10


def absorption_fraction(probe_projection: float, main_projection: float, absorber_projections: list[float]) -> float:
    """Share of the probe projection carried by (at most 3) absorbing latents rather than main ones.

    As `calculate_absorption` ("calculate absorption_fraction"): `absorber_projections` are the
    projections of non-main latents whose decoder has cos >= 0.1 with the probe and whose
    projection is positive; the top 3 count. The fraction is 0 when the main latents carry the
    whole probe projection or the absorbers carry < 40% of it, 1 when the main latents carry
    nothing, else min(absorbed, unaccounted) / (that + main), clipped to [0, 1].
    """
    top = sorted(absorber_projections, reverse=True)[:MAX_ABSORBING_LATENTS]
    absorbed = sum(top)
    if probe_projection == 0:  # SAEBench divides by zero here (never happens on real activations)
        return 0.0
    if main_projection >= probe_projection or absorbed / probe_projection < PROJECTION_PROPORTION_THRESHOLD:
        return 0.0
    if main_projection <= 0.0:
        return 1.0
    unaccounted = probe_projection - main_projection
    absorbed = min(absorbed, unaccounted)
    return float(min(max(absorbed / (absorbed + main_projection), 0.0), 1.0))


def is_full_absorption(probe_projection: float, main_activations: list[float], top_cos: float,
                       top_projection: float) -> bool:
    """As `FeatureAbsorptionCalculator._is_full_absorption`: every main latent silent (< EPS),
    the top-projecting latent aligned with the probe (cos >= 0.025), the probe active
    (projection >= 0), and that latent carrying >= 40% of the probe projection."""
    if not all(a < EPS for a in main_activations):
        return False
    if top_cos < FULL_ABSORPTION_COS_THRESHOLD:
        return False
    if probe_projection < 0:
        return False
    if probe_projection == 0:  # SAEBench divides by zero here
        return False
    return top_projection / probe_projection >= PROJECTION_PROPORTION_THRESHOLD


@dataclass
class LetterAbsorption:
    """One letter's step-5 result over its words (SAEBench main.py `_aggregate_results_df`)."""

    fractions: list[float]  # absorption fraction per word
    full: list[bool]  # full absorption per word

    @property
    def words(self) -> int:
        return len(self.fractions)

    @property
    def mean_fraction(self) -> float:
        """sum of fractions / num_probe_true_positives (the words are exactly those)."""
        return sum(self.fractions) / self.words if self.words else math.nan

    @property
    def full_rate(self) -> float:
        return sum(self.full) / self.words if self.words else math.nan


@torch.no_grad()
def letter_absorption(acts: torch.Tensor, latents: torch.Tensor, decoder: torch.Tensor, probe: torch.Tensor,
                      main_ids: list[int]) -> LetterAbsorption:
    """Step 5 for one letter, word by word as `calculate_absorption`.

    acts [n, d]: residual activations at the word token (fresh prompts); latents [n, L]: the SAE's
    encoding of them; decoder [L, d]: W_dec; probe [d]: the letter's ground-truth probe weights
    (the bias is not used: the probe projection is acts @ unit probe direction); main_ids: the
    letter's main (split) latents from k-sparse probing.
    """
    direction = probe.float() / probe.float().norm()
    cos = torch.nn.functional.cosine_similarity(direction[None, :], decoder.float(), dim=-1)  # [L]
    projections = latents.float() * cos[None, :]  # each latent's contribution along the probe
    probe_projection = acts.float() @ direction
    is_main = torch.zeros(latents.shape[1], dtype=torch.bool)
    is_main[main_ids] = True
    absorber_mask = (~is_main) & (cos >= ABSORPTION_FRACTION_COS_THRESHOLD)
    top_count = min(TOP_FEATURES, latents.shape[1])
    fractions, full = [], []
    for i in range(acts.shape[0]):
        proj = projections[i]
        p = float(probe_projection[i])
        absorbers = proj[absorber_mask & (proj > 0)]
        fractions.append(absorption_fraction(p, float(proj[is_main].sum()), absorbers.tolist()))
        top = int(proj.topk(top_count).indices[0])
        full.append(is_full_absorption(p, latents[i, main_ids].tolist(), float(cos[top]), float(proj[top])))
    return LetterAbsorption(fractions, full)
