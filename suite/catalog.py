"""The metrics sae-bench stores, with their meaning and their SAEBench name. One list drives the
store's views, the spec's allowed health keys and the docs, so they cannot drift apart.

Conventions are SAEBench's core eval (sae_bench/evals/core/main.py, `run_evals` with
`exclude_special_tokens_from_reconstruction=True`):
- special tokens are the tokenizer's BOS, EOS and PAD ids (SAEBench's `ignore_tokens`);
- zero ablation zeroes the hooked output at every position, special ones included;
- the SAE patch uses the reconstruction at non-special positions and keeps the original
  activation at special ones (`standard_replacement_hook`);
- CE is next-token CE over positions t < T-1 whose input token is not special; KL(clean ||
  patched) over every position (the last included) whose input token is not special
  (`get_downstream_reconstruction_metrics`); means are over all such positions of the run;
- sparsity, density and reconstruction metrics use their own (larger) token budget, over
  non-special positions (`get_sparsity_and_variance_metrics`), in batches read from the start
  of the eval stream like the CE/KL batches.

Deliberate differences from SAEBench are listed in `DIFFERENCES` and in the README.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool | None  # None: neither (a diagnostic such as ce_clean)
    saebench: str | None = None  # SAEBench core's name for the same number, where identical


METRICS: tuple[Metric, ...] = (
    Metric("loss_recovered", "(CE_zero - CE_sae) / (CE_zero - CE_clean): layer output zero-ablated vs SAE-patched",
           True, "ce_loss_score"),
    Metric("kl_score", "(KL_zero - KL_sae) / KL_zero, KL(clean || patched) of next-token distributions",
           True, "kl_div_score"),
    Metric("l0", "mean number of non-zero latents per token", None, "l0"),
    Metric("l1", "mean sum of latent activations per token", None, "l1"),
    Metric("dead_fraction", "share of latents that never fire over the sparsity tokens (1 - frac_alive)",
           False, "1 - frac_alive"),
    Metric("freq_over_1_percent", "share of latents firing on more than 1% of the sparsity tokens", False,
           "freq_over_1_percent"),
    Metric("freq_over_10_percent", "share of latents firing on more than 10% of the sparsity tokens", False,
           "freq_over_10_percent"),
    Metric("explained_variance", "1 - sum|x - x_hat|^2 / sum|x - mean(x)|^2 over the sparsity tokens (1 - FVU; "
           "variance about the mean, see DIFFERENCES)", True),
    Metric("explained_variance_saebench", "SAEBench core's explained_variance as computed since March 2025: total "
           "variance taken about zero (SAELens issue #659), for comparison with SAEBench outputs", True,
           "explained_variance"),
    Metric("explained_variance_legacy", "SAEBench's per-token mean of 1 - |x - x_hat|^2 / |x - batch mean|^2 "
           "(the SAEBench paper's and Neuronpedia's number)", True, "explained_variance_legacy"),
    Metric("mse", "mean over tokens and dimensions of (x - x_hat)^2", False),
    Metric("mse_saebench", "SAEBench core's mse: per-token sum of squared errors divided by the batch's count of "
           "scored tokens, averaged (depends on the batch size)", False, "mse"),
    Metric("cossim", "mean cosine similarity of x and x_hat", True, "cossim"),
    Metric("l2_ratio", "mean |x_hat| / |x| (|x| < 1e-4 counted as 1)", None, "l2_ratio"),
    Metric("relative_reconstruction_bias", "sum|x_hat|^2 / sum<x, x_hat> per batch, averaged over batches (1 = no "
           "shrinkage; Gated SAE paper eq. 10)", None, "relative_reconstruction_bias"),
    Metric("ce_clean", "next-token cross-entropy of the untouched model (nats)", None, "ce_loss_without_sae"),
    Metric("ce_zero", "cross-entropy with the hooked output replaced by zeros (nats)", None, "ce_loss_with_ablation"),
    Metric("ce_sae", "cross-entropy with the hooked output replaced by the SAE reconstruction (nats)", None,
           "ce_loss_with_sae"),
    Metric("kl_zero", "mean KL(clean || zero-ablated) per token (nats)", None, "kl_div_with_ablation"),
    Metric("kl_sae", "mean KL(clean || SAE-patched) per token (nats)", None, "kl_div_with_sae"),
    Metric("eval_tokens", "positions scored for CE (input token not special, t < T-1)", None),
    Metric("sparsity_eval_tokens", "non-special tokens of the sparsity / reconstruction batches", None),
    Metric("absorption", "SAEBench first-letter mean absorption fraction (mean over letters)", False,
           "mean_absorption_fraction_score"),
    Metric("absorption_full", "SAEBench first-letter full-absorption rate (mean over letters)", False,
           "mean_full_absorption_score"),
    Metric("absorption_split_features", "mean number of main latents per letter (k-sparse probing)", None,
           "mean_num_split_features"),
    Metric("absorption_letters", "letters scored for absorption (ground-truth probe F1 above threshold)", None),
)

# SAEBench's sparse-probing eval (sae_bench/evals/sparse_probing/eval_output.py names them): test
# accuracy of one-vs-rest logistic probes on mean-pooled activations, averaged over a labelled
# dataset's classes; `llm_*` on the model's activations at the SAE's hook, `sae_*` on the SAE's
# latents; `*_top_{k}_*` on the k dimensions with the largest class-mean difference.
PROBING_K: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)  # the k SAEBench's output schema names
PROBING_METRICS: tuple[str, ...] = (
    "llm_test_accuracy", *(f"llm_top_{k}_test_accuracy" for k in PROBING_K),
    "sae_test_accuracy", *(f"sae_top_{k}_test_accuracy" for k in PROBING_K),
)


def _probing_metric(name: str) -> Metric:
    inputs = "the model's activations at the SAE's hook" if name.startswith("llm") else "the SAE's latents"
    dims = "all dimensions" if "_top_" not in name else f"the top {name.split('_')[2]} by class-mean difference"
    return Metric(name, f"sparse probing: mean test accuracy over classes of a probe on {inputs}, {dims}", True, name)


METRICS = METRICS + tuple(_probing_metric(name) for name in PROBING_METRICS)

# Metrics of the first-letter absorption eval: they depend on the SAE, not on an eval dataset,
# and are stored once per SAE under the eval name 'absorption'.
ABSORPTION_METRICS: tuple[str, ...] = (
    "absorption", "absorption_full", "absorption_split_features", "absorption_letters",
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
CORE_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if n not in ABSORPTION_METRICS + PROBING_METRICS)

GATEABLE_METRICS: tuple[str, ...] = METRIC_NAMES

# Token means whose 95% bootstrap interval (over eval sequences) the harness stores.
INTERVAL_METRICS: tuple[str, ...] = (
    "loss_recovered", "kl_score", "l0", "explained_variance", "mse", "cossim", "ce_sae",
)

# Where sae-bench deliberately differs from SAEBench's core eval, and why.
DIFFERENCES: tuple[tuple[str, str], ...] = (
    ("explained_variance",
     "SAEBench (since its commit 3b58c67, March 2025) squares E[x_d^2] instead of E[x_d] when it removes the mean, "
     "so its total variance is taken about zero (acknowledged and fixed in SAELens PRs #665/#710, issue #659). "
     "Ours is the textbook 1 - SSE / sum|x - mean x|^2; SAEBench's number is stored as explained_variance_saebench."),
    ("mse",
     "SAEBench divides each token's squared error by the number of scored tokens in its batch, which makes the number "
     "depend on the batch size. Ours is the mean over tokens and dimensions; SAEBench's is stored as mse_saebench "
     "(equal to SAEBench's only with the same eval batch_size and ctx_len)."),
    ("token windows",
     "Windows are BOS followed by documents joined with EOS (SAELens's activation store joins with BOS). Special "
     "positions are excluded either way, so this changes which text is scored, not how."),
    ("precision",
     "SAE maths runs in fp32 whatever the model's dtype (SAEBench casts the SAE to the model's dtype), and KL uses "
     "log_softmax rather than log(softmax(.)), which avoids log(0) on underflowing probabilities."),
    ("intervals",
     "sae-bench adds 95% bootstrap intervals over eval sequences; SAEBench reports point values."),
    ("sparse probing",
     "One score per labelled dataset ([probing.NAME]) where SAEBench averages its datasets; the negatives of each "
     "one-vs-rest task are drawn once and shared by the model's and every SAE's probes (SAEBench redraws them per "
     "probe); texts run unpadded in masked batches, BOS first; bias_in_bios is not balanced by gender "
     "(harness.evals.sparse_probing)."),
)


def describe(name: str) -> str:
    return next(m.description for m in METRICS if m.name == name)
