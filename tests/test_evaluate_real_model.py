"""The scoring loop on a real (tiny) LlamaForCausalLM with SAEs whose answer is known:
an identity SAE recovers all the loss, an SAE that outputs zeros recovers none."""

from __future__ import annotations

import pytest
import torch

from harness.evaluate import evaluate
from harness.models import load_model
from harness.saes import TopKSae
from suite.jobs import DatasetRef, EvalSettings, ModelRef, SaeSettings


class IdentitySae(TopKSae):
    def encode(self, x):
        return x.clone()

    def decode(self, latents):
        return latents


class ZeroSae(TopKSae):
    def decode(self, latents):
        return torch.zeros(latents.shape[0], self.d_model)


@pytest.fixture(scope="module")
def tiny_model():
    return load_model(ModelRef("base", "builtin:tiny-base"), torch.device("cpu"))


def test_identity_and_zero_saes(tiny_model):
    d = tiny_model.d_model
    saes = {
        "identity": (1, IdentitySae(d, SaeSettings(k=d, latents=d))),
        "zero": (1, ZeroSae(d, SaeSettings(k=4, latents=16))),
    }
    ev = EvalSettings("pyref", DatasetRef("builtin:pyref", "test"), tokens=600)
    scores, intervals = evaluate(tiny_model, saes, (ev,), ctx_len=64, batch_size=4)
    identity, zero = scores["identity"]["pyref"], scores["zero"]["pyref"]
    assert identity["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert identity["kl_score"] == pytest.approx(1.0, abs=1e-5)
    assert identity["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert zero["loss_recovered"] == pytest.approx(0.0, abs=1e-5)
    assert zero["kl_score"] == pytest.approx(0.0, abs=1e-5)
    assert zero["ce_sae"] == pytest.approx(zero["ce_zero"], rel=1e-6)
    # zero-ablating a layer must hurt, and the clean model must beat a uniform guess
    vocab = tiny_model.model.config.vocab_size
    assert identity["ce_zero"] > identity["ce_clean"]
    assert identity["ce_clean"] < torch.log(torch.tensor(float(vocab))).item() - 0.5
    assert identity["eval_tokens"] >= 600
    # an exact SAE has no uncertainty about recovering everything
    assert intervals["identity"]["pyref"]["loss_recovered"] == pytest.approx((1.0, 1.0), abs=1e-5)
    low, high = intervals["zero"]["pyref"]["kl_score"]
    assert low == pytest.approx(0.0, abs=1e-5) and high == pytest.approx(0.0, abs=1e-5)


def test_bos_positions_are_not_scored(tiny_model):
    """With ctx 64 each window holds one BOS and some EOS separators, none of which are scored."""
    from harness.tokens import iter_windows, special_mask

    batch = next(iter_windows(DatasetRef("builtin:pyref", "test"), tiny_model.tokenizer, 64, 4))
    assert (batch[:, 0] == tiny_model.tokenizer.bos_token_id).all()
    scored = int((~special_mask(batch, tiny_model.special_ids.cpu())).sum())
    d = tiny_model.d_model
    ev = EvalSettings("x", DatasetRef("builtin:pyref", "test"), tokens=1)
    scores, _ = evaluate(tiny_model, {"i": (0, IdentitySae(d, SaeSettings(k=d, latents=d)))}, (ev,), 64, 4)
    assert scores["i"]["x"]["eval_tokens"] == scored < batch.numel()
