"""The scoring loop on a real (tiny) LlamaForCausalLM with SAEs whose answer is known: an
identity SAE recovers all the loss, an SAE that outputs zeros recovers none, and the masks are
SAEBench's (which positions are scored is counted by hand)."""

from __future__ import annotations

import pytest
import torch

from harness.activations import HookSite
from harness.evals.core import score_core
from harness.models import load_model
from harness.saes import TopKSae
from harness.tokens import iter_windows, special_mask
from suite.jobs import DatasetRef, EvalSettings, ModelRef, SaeSettings


class IdentitySae(TopKSae):
    def encode(self, x):
        return x.clone()

    def decode(self, latents):
        return latents


class ZeroSae(TopKSae):
    def decode(self, latents):
        return torch.zeros(*latents.shape[:-1], self.d_model)


@pytest.fixture(scope="module")
def tiny_model():
    return load_model(ModelRef("builtin:tiny-base", name="base"), torch.device("cpu"))


def evaluation(tokens=512, sparsity_tokens=1024):
    return EvalSettings("pyref", DatasetRef("builtin:pyref", "test"), tokens=tokens, sparsity_tokens=sparsity_tokens,
                        ctx_len=64, batch_size=4)


def test_identity_and_zero_saes(tiny_model):
    d = tiny_model.d_model
    saes = {
        "identity": (HookSite(1), IdentitySae(d, SaeSettings(k=d, latents=d))),
        "zero": (HookSite(1), ZeroSae(d, SaeSettings(k=4, latents=16))),
    }
    scores = score_core(tiny_model, saes, evaluation())
    identity, zero = scores["identity"].metrics, scores["zero"].metrics
    assert identity["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert identity["kl_score"] == pytest.approx(1.0, abs=1e-5)
    assert identity["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    # SAEBench's zero ablation zeroes every position while the patch keeps special positions (BOS,
    # the attention sink, among them): an SAE that outputs zeros recovers part of the loss (a lot,
    # on this tiny model), never all of it (exact values: test_saebench_reference.py)
    assert 0 < zero["loss_recovered"] < 0.9 and 0 < zero["kl_score"] < 0.9
    assert zero["ce_sae"] < zero["ce_zero"]
    vocab = tiny_model.model.config.vocab_size
    assert identity["ce_zero"] > identity["ce_clean"]
    assert identity["ce_clean"] < torch.log(torch.tensor(float(vocab))).item() - 0.5
    # an exact SAE has no uncertainty about recovering everything
    assert scores["identity"].intervals["loss_recovered"] == pytest.approx((1.0, 1.0), abs=1e-5)
    low, high = scores["zero"].intervals["kl_score"]
    assert low <= zero["kl_score"] <= high
    assert scores["identity"].dataset_fingerprint == scores["zero"].dataset_fingerprint


def test_budgets_and_masks_count_the_positions_saebench_scores(tiny_model):
    """CE positions: t < T-1 with a non-special input token; sparsity tokens: non-special tokens
    of the first `sparsity_tokens` worth of batches, read from the stream's start again."""
    ev = evaluation(tokens=512, sparsity_tokens=1024)  # 2 and 4 batches of 4 x 64
    batches = [b for _, b in zip(range(4), iter_windows(ev.dataset, tiny_model.tokenizer, 64, 4))]
    specials = tiny_model.special_ids.cpu()
    ce_positions = sum(int((~special_mask(b[:, :-1], specials)).sum()) for b in batches[:2])
    sparsity_positions = sum(int((~special_mask(b, specials)).sum()) for b in batches)
    assert (batches[0][:, 0] == tiny_model.tokenizer.bos_token_id).all()
    d = tiny_model.d_model
    scores = score_core(tiny_model, {"i": (HookSite(0), IdentitySae(d, SaeSettings(k=d, latents=d)))}, ev)
    assert scores["i"].metrics["eval_tokens"] == ce_positions < 2 * 4 * 63
    assert scores["i"].metrics["sparsity_eval_tokens"] == sparsity_positions < 4 * 4 * 64


def test_mlp_and_attention_hooks_are_patched_too(tiny_model):
    d = tiny_model.d_model
    for hook in ("mlp_out", "attn_out"):
        scores = score_core(tiny_model, {
            "identity": (HookSite(1, hook), IdentitySae(d, SaeSettings(k=d, latents=d))),
            "zero": (HookSite(1, hook), ZeroSae(d, SaeSettings(k=4, latents=16))),
        }, evaluation(tokens=256, sparsity_tokens=256))
        assert scores["identity"].metrics["loss_recovered"] == pytest.approx(1.0, abs=1e-5), hook
        assert scores["zero"].metrics["loss_recovered"] < 0.9, hook
        assert 0 < scores["zero"].metrics["kl_zero"]
