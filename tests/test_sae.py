"""SAE mechanics: TopK sparsity bound, unit-norm decoder, projected gradients, b_dec init, AuxK,
SAELens parameter layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.activations import ShuffleBuffer
from harness.saes import StepContext, TopKSae, build_sae, geometric_median
from suite.jobs import SaeSettings


def make(k=4, latents=32, d=8, **kw):
    return TopKSae(d, SaeSettings(k=k, latents=latents, **kw), torch.Generator().manual_seed(0))


def step(sae, x, dead=None):
    return sae.training_loss(x, StepContext(step=0, total_steps=10, dead=dead))


def test_parameters_follow_saelens_layout():
    sae = build_sae(8, SaeSettings(arch="topk", k=4, latents=32))
    shapes = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    assert shapes == {"W_enc": (8, 32), "b_enc": (32,), "W_dec": (32, 8), "b_dec": (8,)}


def test_topk_keeps_the_k_largest_positive_pre_activations():
    sae = make(k=4)
    x = torch.randn(50, 8)
    latents = sae.encode(x)
    assert ((latents != 0).sum(-1) <= 4).all() and (latents >= 0).all()
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)  # by hand, from the parameters
    kept = latents.sort(-1, descending=True).values[:, :4]
    assert torch.allclose(kept, pre.sort(-1, descending=True).values[:, :4])


def test_decoder_rows_stay_unit_norm_and_gradient_is_tangent():
    sae = make()
    x = torch.randn(64, 8) * 3
    sae.init_from_batch(x)
    step(sae, x).fvu.backward()
    sae.before_optimizer_step()
    along_rows = (sae.W_dec.grad * sae.W_dec).sum(-1)
    assert along_rows.abs().max() < 1e-5
    torch.optim.Adam(sae.parameters(), lr=0.1).step()
    sae.after_optimizer_step()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)


def test_geometric_median_resists_outliers():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1000.0, 1000.0]])
    median = geometric_median(points)
    assert median.norm() < 2.0 < points.mean(0).norm()


def test_fvu_by_hand():
    sae = make(k=2, latents=4, d=3)
    x = torch.randn(10, 3)
    out = step(sae, x)
    xn, xh = x.numpy(), out.x_hat.detach().numpy()
    expected = ((xn - xh) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    assert out.fvu.item() == pytest.approx(float(expected), rel=1e-5)


def test_auxk_only_with_dead_latents_and_it_trains_them():
    sae = make(k=2, latents=16, d=8)
    x = torch.randn(32, 8)
    assert step(sae, x).parts["auxk"].item() == 0.0
    dead = torch.zeros(16, dtype=torch.bool)
    dead[:8] = True
    out = step(sae, x, dead)
    assert out.parts["auxk"].item() > 0
    out.parts["auxk"].backward()
    assert sae.W_enc.grad[:, :8].abs().sum() > 0  # dead latents receive gradient
    assert sae.W_enc.grad[:, 8:].abs().sum() == 0  # live ones get none from AuxK


def test_shuffle_buffer_keeps_rows_aligned_and_loses_none():
    buffer = ShuffleBuffer(capacity=40, batch=8, generator=torch.Generator().manual_seed(0))
    seen = []
    for start in range(0, 100, 10):
        ids = torch.arange(start, start + 10, dtype=torch.float32)[:, None]
        for batch in buffer.add({0: ids, 3: ids * 2}):
            assert torch.equal(batch[3], batch[0] * 2)  # both layers see the same tokens
            seen.append(batch[0])
    seen.extend(b[0] for b in buffer.drain())
    rows = torch.cat(seen).flatten()
    assert sorted(rows.tolist()) == list(range(100))
    assert not np.array_equal(rows.numpy(), np.arange(100))  # actually shuffled
