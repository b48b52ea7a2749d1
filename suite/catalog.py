"""The metrics sae-bench stores, with their meaning. One list drives the store's views,
the spec's allowed health keys and the docs, so they cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool | None  # None: neither (a diagnostic such as ce_clean)


METRICS: tuple[Metric, ...] = (
    Metric("loss_recovered", "(CE_zero - CE_sae) / (CE_zero - CE_clean), layer zero-ablated vs SAE-patched", True),
    Metric("kl_score", "(KL_zero - KL_sae) / KL_zero, KL(clean || patched) of next-token distributions", True),
    Metric("l0", "mean number of non-zero latents per token", None),
    Metric("dead_fraction", "share of latents that never fire over the eval tokens", False),
    Metric("explained_variance", "1 - sum|x - x_hat|^2 / sum|x - mean(x)|^2 over all eval tokens (1 - FVU)", True),
    Metric("explained_variance_legacy", "SAEBench's per-token mean of 1 - |x - x_hat|^2 / |x - batch mean|^2", True),
    Metric("mse", "mean over tokens and dimensions of (x - x_hat)^2", False),
    Metric("cossim", "mean cosine similarity of x and x_hat", True),
    Metric("relative_reconstruction_bias", "sum|x_hat|^2 / sum<x, x_hat> (1 = no shrinkage; Gated SAE paper eq. 10)", None),
    Metric("ce_clean", "next-token cross-entropy of the untouched model (nats)", None),
    Metric("ce_zero", "cross-entropy with the layer output replaced by zeros (nats)", None),
    Metric("ce_sae", "cross-entropy with the layer output replaced by the SAE reconstruction (nats)", None),
    Metric("kl_zero", "mean KL(clean || zero-ablated) per token (nats)", None),
    Metric("kl_sae", "mean KL(clean || SAE-patched) per token (nats)", None),
    Metric("eval_tokens", "number of scored (non-special) tokens", None),
    Metric("absorption", "SAEBench first-letter mean absorption fraction (mean over letters)", False),
    Metric("absorption_full", "SAEBench first-letter full-absorption rate (mean over letters)", False),
    Metric("absorption_split_features", "mean number of main latents per letter (k-sparse probing)", None),
    Metric("absorption_letters", "letters scored for absorption (ground-truth probe F1 above threshold)", None),
)

# Metrics from the first-letter absorption eval: they depend on the SAE, not on the eval dataset,
# and are stored under every eval dataset so each eval's health gates are complete.
ABSORPTION_METRICS: tuple[str, ...] = (
    "absorption", "absorption_full", "absorption_split_features", "absorption_letters",
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)

GATEABLE_METRICS: tuple[str, ...] = METRIC_NAMES

# Token means whose 95% bootstrap interval (over eval sequences) the harness stores.
INTERVAL_METRICS: tuple[str, ...] = (
    "loss_recovered", "kl_score", "l0", "explained_variance", "mse", "cossim", "ce_sae",
)
