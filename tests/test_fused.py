"""Fused training (harness.fused) against the one-SAE-at-a-time path it replaces.

The unfused path is the reference: each SAE's own `training_loss`, its own Adam. With the dense
decoder the fused stack must give the same weights bit for bit on CPU; with the sparse decoder
(gathering the k active decoder rows) the same sums in another order, so weights agree to float32
rounding (SPARSE_ATOL after a short run with AuxK active).
"""

from __future__ import annotations

import pytest
import torch

import harness.fused as fused
from harness.models import load_model
from harness.train import _Fused, _Single, steppers, train_group
from suite.jobs import DatasetRef, Job, ModelRef, SaeRef, SaeSettings, TrainSettings

SPARSE_ATOL = 1e-4  # largest weight difference allowed, sparse vs dense decoding, after TRAIN.tokens


class _Log:
    def __init__(self):
        self.rows: dict[str, list] = {}

    def train_log(self, job, rows):
        self.rows.setdefault(job.key, []).extend(rows)


TRAIN = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=4096, ctx_len=64, batch_size=8, lr=1e-3, seed=3)


def _jobs(model: ModelRef) -> list[Job]:
    """Three SAEs of one shape (layers 0, 2, 1: one stack) and one of another shape (alone),
    AuxK active from the first steps (dead_tokens 512)."""
    same = SaeSettings(k=8, latents=96, dead_tokens=512)
    other = SaeSettings(k=8, latents=64, dead_tokens=512)
    return [Job(SaeRef(model, "resid_post", layer, TRAIN, settings), True, (), log_every=2)
            for layer, settings in ((0, same), (2, same), (1, same), (1, other))]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return load_model(ModelRef("builtin:tiny-base"), torch.device("cpu"))


def _train(lm, fuse: bool, decoder: str | None, monkeypatch):
    monkeypatch.setattr(fused, "DECODER", decoder)
    log = _Log()
    group = train_group(lm, TRAIN, _jobs(lm.ref), log, fuse=fuse)
    weights = [{name: p.detach().clone() for name, p in t.sae.named_parameters()} for t in group.trainers]
    return group, weights, log.rows


def test_grouping_stacks_same_shapes_only(tiny):
    from harness.train import SaeTrainer

    trainers = [SaeTrainer.create(job, tiny.d_model, tiny.device) for job in _jobs(tiny.ref)]
    kinds = sorted((type(s).__name__, len(s.stack.trainers) if isinstance(s, _Fused) else 1)
                   for s in steppers(trainers))
    assert kinds == [("_Fused", 3), ("_Single", 1)]  # 96 latents >= 8 x k: a sparse stack
    assert all(isinstance(s, _Single) for s in steppers(trainers, fuse=False))
    dense_shape = [SaeTrainer.create(Job(SaeRef(tiny.ref, "resid_post", layer, TRAIN, SaeSettings(k=16, latents=96)),
                                         True, ()), tiny.d_model, tiny.device) for layer in (0, 1)]
    assert all(isinstance(s, _Single) for s in steppers(dense_shape))  # 96 < 8 x 16: fusing does not pay


def test_dense_fused_training_gives_the_unfused_weights_bit_for_bit(tiny, monkeypatch):
    reference, want, want_log = _train(tiny, False, None, monkeypatch)
    group, got, got_log = _train(tiny, True, "dense", monkeypatch)
    assert group.tokens == reference.tokens == TRAIN.tokens
    assert any(row.dead_fraction > 0 for rows in want_log.values() for row in rows)  # AuxK was exercised
    for w, g in zip(want, got):
        for name in w:
            assert torch.equal(w[name], g[name]), name
    assert got_log == want_log  # loss, FVU, L0 and dead fraction of every logged step
    for trainer in group.trainers:  # each SAE owns its storage again after training
        assert trainer.sae.W_dec.untyped_storage().nbytes() == trainer.sae.W_dec.numel() * 4


def test_sparse_decoding_matches_within_rounding(tiny, monkeypatch):
    _, want, _ = _train(tiny, False, None, monkeypatch)
    _, got, _ = _train(tiny, True, "sparse", monkeypatch)
    worst = max(float((w[name] - g[name]).abs().max()) for w, g in zip(want, got) for name in w)
    assert worst < SPARSE_ATOL
    assert worst > 0  # the sparse path ran: it sums in another order than the dense one


def test_sparse_decode_is_the_dense_product():
    gen = torch.Generator().manual_seed(0)
    S, n, m, d, k = 3, 10, 40, 6, 5
    W_dec = torch.randn(S, m, d, generator=gen)
    pre = torch.rand(S, n, m, generator=gen)
    values, indices = pre.topk(k, dim=-1)
    dense = torch.zeros(S, n, m).scatter_(-1, indices, values)
    by_hand = torch.stack([torch.stack([dense[s, i] @ W_dec[s] for i in range(n)]) for s in range(S)])
    assert torch.allclose(fused.sparse_decode(values, indices, W_dec), by_hand, atol=1e-6)


def test_a_diverging_sae_fails_alone_inside_a_stack(tiny, monkeypatch):
    """A NaN planted in one stacked SAE's decoder fails that SAE; its stack mates train on
    to the same weights as when trained without it."""
    from harness import train as train_module

    original = train_module.SaeTrainer.create
    jobs = _jobs(tiny.ref)

    def create(job, d_model, device):
        trainer = original(job, d_model, device)
        if job is jobs[0]:
            after = trainer.sae.after_optimizer_step

            def poisoned():
                after()
                if trainer.step == 3:
                    with torch.no_grad():
                        trainer.sae.W_dec[0, 0] = float("nan")

            trainer.sae.after_optimizer_step = poisoned
        return trainer

    _, clean, _ = _train(tiny, False, None, monkeypatch)
    monkeypatch.setattr(train_module.SaeTrainer, "create", staticmethod(create))
    monkeypatch.setattr(fused, "DECODER", "dense")
    group = train_group(tiny, TRAIN, jobs, _Log(), fuse=True)
    assert group.trainers[0].failure and group.trainers[0].failure.startswith("diverged at step 4")
    for trainer, want in zip(group.trainers[1:], clean[1:]):
        assert trainer.failure is None
        for name, p in trainer.sae.named_parameters():
            assert torch.equal(p.detach(), want[name]), name
