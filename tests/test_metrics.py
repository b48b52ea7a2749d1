"""Metrics against independent hand computations (numpy / plain Python), not the code's output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.metrics import DownstreamStats, ReconstructionStats, kl_score, loss_recovered, token_ce, token_kl


def test_loss_recovered_and_kl_score_by_hand():
    assert loss_recovered(ce_clean=2.0, ce_zero=6.0, ce_sae=3.0) == pytest.approx(0.75)
    assert loss_recovered(2.0, 6.0, 2.0) == 1.0  # SAE as good as the clean model
    assert loss_recovered(2.0, 6.0, 6.0) == 0.0  # SAE as bad as zero-ablation
    assert math.isnan(loss_recovered(2.0, 2.0, 3.0))  # ablation harmless: undefined, not a number
    assert kl_score(kl_zero=4.0, kl_sae=1.0) == pytest.approx(0.75)


def test_reconstruction_stats_match_numpy():
    """Two batches by hand with numpy: per-token means pooled over both, per-batch quantities
    averaged over batches (SAEBench's relative reconstruction bias and its explained variance)."""
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(5, 3)) + 1.0, rng.normal(size=(4, 3)) + 2.0]
    noise = [rng.normal(scale=0.3, size=b.shape) for b in batches]
    codes = [np.array([[0, 1.5, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 3]]),
             np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0]])]
    stats = ReconstructionStats(latents=4, d_model=3)
    for x, e, z in zip(batches, noise, codes):
        stats.add(torch.tensor(x), torch.tensor(x + e), torch.tensor(z))
    got = stats.result()

    x = np.concatenate(batches)
    x_hat = np.concatenate([b + e for b, e in zip(batches, noise)])
    z = np.concatenate(codes)
    err = ((x - x_hat) ** 2).sum(1)
    legacy = np.concatenate([1 - ((b - (b + e)) ** 2).sum(1) / ((b - b.mean(0)) ** 2).sum(1)
                             for b, e in zip(batches, noise)])
    cos = (x * x_hat).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x_hat, axis=1)
    per_batch_rrb = [((b + e) ** 2).sum(1).mean() / (b * (b + e)).sum(1).mean() for b, e in zip(batches, noise)]
    mean_sq = np.mean([(b ** 2).sum(1).mean() for b in batches])
    resid = np.mean([(e ** 2).sum(1).mean() for e in noise])
    mse_saebench = np.concatenate([(e ** 2).sum(1) / len(e) for e in noise]).mean()
    assert got["l0"] == pytest.approx((z != 0).sum(1).mean())  # 6 non-zeros over 9 tokens
    assert got["l1"] == pytest.approx(z.sum(1).mean())
    assert got["dead_fraction"] == pytest.approx(0.5)  # latents 0 and 2 never fire
    assert got["freq_over_10_percent"] == pytest.approx(0.5)  # latent 1 (6/9) and 3 (1/9)
    assert got["freq_over_1_percent"] == pytest.approx(0.5)
    assert got["explained_variance"] == pytest.approx(1 - err.sum() / ((x - x.mean(0)) ** 2).sum())
    assert got["explained_variance_saebench"] == pytest.approx(1 - resid / (mean_sq - (mean_sq / 3) ** 2))
    assert got["explained_variance_legacy"] == pytest.approx(legacy.mean())
    assert got["mse"] == pytest.approx(((x - x_hat) ** 2).mean())
    assert got["mse_saebench"] == pytest.approx(mse_saebench)
    assert got["cossim"] == pytest.approx(cos.mean())
    assert got["l2_ratio"] == pytest.approx((np.linalg.norm(x_hat, axis=1) / np.linalg.norm(x, axis=1)).mean())
    assert got["relative_reconstruction_bias"] == pytest.approx(np.mean(per_batch_rrb))
    assert got["sparsity_eval_tokens"] == 9


def test_density_histogram_counts_every_latent_once():
    stats = ReconstructionStats(latents=5, d_model=2)
    # latent 0 fires on every token, 1 on one token in 10, 2 on one in 100, 3 and 4 never
    z = torch.zeros(100, 5)
    z[:, 0] = 1.0
    z[::10, 1] = 1.0
    z[0, 2] = 1.0
    stats.add(torch.randn(100, 2), torch.randn(100, 2), z)
    bins = stats.density_histogram()
    assert sum(b.latents for b in bins) == 5
    never = [b for b in bins if b.log10_low is None]
    assert len(never) == 1 and never[0].latents == 2
    placed = {b.log10_low: b.latents for b in bins if b.latents and b.log10_low is not None}
    assert placed == {-0.5: 1, -1.0: 1, -2.0: 1}  # log10 1 = 0, log10 0.1 = -1, log10 0.01 = -2


def test_perfect_reconstruction_explains_everything():
    x = torch.randn(10, 4)
    stats = ReconstructionStats(latents=2, d_model=4)
    stats.add(x, x.clone(), torch.ones(10, 2))
    result = stats.result()
    assert result["explained_variance"] == pytest.approx(1.0)
    assert result["mse"] == 0 and result["cossim"] == pytest.approx(1.0)
    assert result["relative_reconstruction_bias"] == pytest.approx(1.0)


def test_token_ce_and_kl_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [1.0, 1.0], [5.0, 0.0]]])  # vocab of 2
    ids = torch.tensor([[0, 1, 0]])
    # position 0 has p = [1/4, 3/4] and predicts token 1; position 1 has p = [1/2, 1/2], predicts 0
    assert token_ce(logits, ids)[0].tolist() == pytest.approx([-math.log(0.75), -math.log(0.5)])
    clean = torch.log_softmax(logits, -1)
    patched = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, 0.0]]])
    p_last = [math.exp(5) / (math.exp(5) + 1), 1 / (math.exp(5) + 1)]
    expected = [0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5),
                0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
                p_last[0] * math.log(p_last[0] / 0.5) + p_last[1] * math.log(p_last[1] / 0.5)]
    assert token_kl(clean, patched)[0].tolist() == pytest.approx(expected)  # every position, the last included
    assert token_kl(clean, logits)[0].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_downstream_stats_average_only_masked_positions():
    """CE over [B, T-1] positions and KL over [B, T] positions, each with its own mask."""
    stats = DownstreamStats()
    ce_mask = torch.tensor([[True, False, True]])
    kl_mask = torch.tensor([[True, False, True, True]])
    stats.add(ce_mask, kl_mask, ce_clean=torch.tensor([[1.0, 100.0, 3.0]]), ce_zero=torch.tensor([[5.0, 0.0, 7.0]]),
              ce_sae=torch.tensor([[2.0, 0.0, 4.0]]), kl_zero=torch.tensor([[1.0, 50.0, 2.0, 3.0]]),
              kl_sae=torch.tensor([[0.5, 50.0, 0.5, 0.5]]))
    result = stats.result()
    assert result["ce_clean"] == 2.0 and result["ce_zero"] == 6.0 and result["ce_sae"] == 3.0
    assert result["kl_zero"] == 2.0 and result["kl_sae"] == 0.5
    assert result["loss_recovered"] == pytest.approx((6 - 3) / (6 - 2))
    assert result["kl_score"] == pytest.approx((2 - 0.5) / 2)
    assert result["eval_tokens"] == 2


def test_collapsed_sae_gives_nan_bias_not_a_crash():
    stats = ReconstructionStats(latents=2, d_model=3)
    stats.add(torch.randn(4, 3), torch.zeros(4, 3), torch.zeros(4, 2))
    result = stats.result()
    assert math.isnan(result["relative_reconstruction_bias"])
    assert result["dead_fraction"] == 1.0 and result["l0"] == 0.0


def test_bootstrap_interval_matches_the_analytic_standard_error():
    from harness.metrics import bootstrap

    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 2.0, size=400)
    units = {"n": np.ones(400), "v": values}
    low, high = bootstrap(units, {"mean": lambda s: s["v"] / s["n"]})["mean"]
    se = values.std(ddof=1) / np.sqrt(400)  # 0.1
    assert low < values.mean() < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_intervals_resample_sequences_not_tokens():
    """Two sequences with very different l0: the interval spans between them; a single
    sequence gives no interval at all."""
    stats = ReconstructionStats(latents=4, d_model=2)
    x = torch.randn(6, 2)
    latents = torch.tensor([[1.0, 0, 0, 0]] * 3 + [[1.0, 1, 1, 1]] * 3)
    stats.add(x, x * 0.9, latents, torch.tensor([0, 0, 0, 1, 1, 1]))
    low, high = stats.intervals()["l0"]
    assert low == pytest.approx(1.0) and high == pytest.approx(4.0)
    single = ReconstructionStats(latents=4, d_model=2)
    single.add(x, x * 0.9, latents)
    assert single.intervals() == {}
