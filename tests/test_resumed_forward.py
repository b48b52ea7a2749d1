"""Patched runs that resume at the patched layer give the numbers of full forwards.

Each model (the built-in Llama models and a tiny random model of every family in
`harness.resume.RESUMABLE`) is checked twice against full forwards that this file runs itself,
with its own hooks: the logits of zero-ablated and replaced runs at every hook point, and every
CE/KL quantity `score_core` stores. A family outside RESUMABLE must fall back to full forwards
with the same numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from harness import resume
from harness.activations import HookSite
from harness.builtin import model_dir
from harness.evals.core import score_core
from harness.models import LoadedModel, decoder_layers, load_model
from harness.saes import build_sae
from harness.tokens import iter_windows
from suite.jobs import DatasetRef, EvalSettings, ModelRef, SaeSettings

SMALL = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, head_dim=16)
WINDOW = dict(sliding_window=16)  # shorter than the eval windows: the sliding-window masks matter
# A tiny random model per claimed family (config class, extra settings).
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", WINDOW),
    "qwen2": ("Qwen2Config", {**WINDOW, "use_sliding_window": True, "max_window_layers": 1}),
    "qwen3": ("Qwen3Config", {}),
    "gemma": ("GemmaConfig", {}),
    "gemma2": ("Gemma2Config", {**WINDOW, "final_logit_softcapping": 5.0, "attn_logit_softcapping": 20.0}),
    "gemma3_text": ("Gemma3TextConfig", {**WINDOW, "final_logit_softcapping": 5.0,
                                         "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}),
    "gpt2": ("GPT2Config", dict(vocab_size=1024, n_embd=64, n_layer=3, n_head=4, n_positions=256)),
    "gpt_neox": ("GPTNeoXConfig", dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                       num_attention_heads=4, max_position_embeddings=256, rotary_pct=0.25)),
}
UNCLAIMED = ("Phi3Config", {})  # not in RESUMABLE: must run full forwards


def _tiny_model(config_name: str, extra: dict) -> LoadedModel:
    from transformers import AutoTokenizer

    cls = getattr(transformers, config_name)
    settings = extra if config_name in ("GPT2Config", "GPTNeoXConfig") else {**SMALL, **extra}
    tokenizer = AutoTokenizer.from_pretrained(model_dir("builtin:tiny-base"))
    config = cls(**settings, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.requires_grad_(False)
    return LoadedModel(ModelRef(f"random:{config.model_type}"), model, tokenizer, decoder_layers(model),
                       torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: one thread is faster than two, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["builtin:tiny-base", "builtin:tiny-finetune", *FAMILIES, "unclaimed"])
def lm(request) -> LoadedModel:
    if request.param.startswith("builtin:"):
        return load_model(ModelRef(request.param), torch.device("cpu"))
    if request.param == "unclaimed":
        return _tiny_model(*UNCLAIMED)
    return _tiny_model(*FAMILIES[request.param])


def _module(lm: LoadedModel, site: HookSite) -> torch.nn.Module:
    """This file's own path to a hook point (not harness.activations')."""
    block = lm.layers[site.layer]
    if site.hook == "resid_post":
        return block
    names = ("mlp",) if site.hook == "mlp_out" else ("self_attn", "attn", "attention")
    return next(getattr(block, name) for name in names if hasattr(block, name))


def _full_forward(lm: LoadedModel, ids: torch.Tensor, site: HookSite, replace=None):
    """Logits of one plain forward, the site's output replaced by `replace(output)`; and that output."""
    seen = {}

    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        seen["act"] = hidden
        if replace is None:
            return None
        new = replace(hidden)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = _module(lm, site).register_forward_hook(hook)
    try:
        return lm.model(input_ids=ids, use_cache=False).logits, seen["act"]
    finally:
        handle.remove()


def _windows(lm: LoadedModel, batches: int, ctx_len: int = 64, batch_size: int = 4) -> list[torch.Tensor]:
    stream = iter_windows(DatasetRef("builtin:pyref", "test"), lm.tokenizer, ctx_len, batch_size)
    out = [next(stream) for _ in range(batches)]
    stream.close()
    return out


def _sites(lm: LoadedModel) -> list[HookSite]:
    last = len(lm.layers) - 1
    return [HookSite(layer, hook) for layer in sorted({0, 1, last}) for hook in ("resid_post", "mlp_out", "attn_out")]


def test_resumed_logits_equal_full_forward_logits(lm):
    ids = _windows(lm, 1)[0]
    clean_logits, _ = _full_forward(lm, ids, HookSite(0))
    sites = _sites(lm)
    clean = resume.clean_run(lm, ids, sites)
    assert torch.equal(clean.logits, clean_logits)
    generator = torch.Generator().manual_seed(1)
    for site in sites:
        original = clean.acts[site]
        replacements = [torch.zeros_like(original), original + torch.randn(original.shape, generator=generator)]
        resumed = resume.patched_logits(lm, ids, site, replacements, clean).split(ids.shape[0])
        for replacement, got in zip(replacements, resumed):
            expected, _ = _full_forward(lm, ids, site, lambda _h, r=replacement: r)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=f"{site}")
        if resume.zero_run_is_one_position(lm, site):
            one = resume.patched_logits(lm, ids[:1, :1], site, [original.new_zeros(1, 1, original.shape[-1])], clean)
            expected, _ = _full_forward(lm, ids, site, torch.zeros_like)
            torch.testing.assert_close(one.expand_as(expected), expected, rtol=1e-5, atol=1e-5, msg=f"{site}")
    assert not any("forward" in layer.__dict__ for layer in lm.layers)  # stand-ins are gone
    claimed = lm.model.config.model_type in resume.RESUMABLE
    assert resume.resume_layer(lm, HookSite(1)) == (2 if claimed else 0)
    assert resume.resume_layer(lm, HookSite(1, "mlp_out")) == (1 if claimed else 0)


@torch.no_grad()
def _expected_downstream(lm: LoadedModel, batches, site: HookSite, saes: dict) -> dict[str, dict[str, float]]:
    """SAEBench's CE/KL means of each SAE of one site from full forwards (clean, zero-ablated,
    patched), in this file's own code."""
    special = {lm.tokenizer.bos_token_id, lm.tokenizer.eos_token_id, lm.tokenizer.pad_token_id} - {None}
    sums = {key: dict.fromkeys(("ce_clean", "ce_zero", "ce_sae", "kl_zero", "kl_sae"), 0.0) for key in saes}
    n_ce = n_kl = 0
    for ids in batches:
        keep = ~torch.isin(ids, torch.tensor(sorted(special)))
        clean, act = _full_forward(lm, ids, site)
        clean_logp = torch.log_softmax(clean.float(), -1)

        def ce_kl(logits):
            logp = torch.log_softmax(logits.float(), -1)
            ce = -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
            kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1)
            return float(ce[keep[:, :-1]].double().sum()), float(kl[keep].double().sum())

        ce_clean, _ = ce_kl(clean)
        ce_zero, kl_zero = ce_kl(_full_forward(lm, ids, site, torch.zeros_like)[0])
        for key, sae in saes.items():
            recon = torch.where(keep[..., None], sae.decode(sae.encode(act.float())).to(act.dtype), act)
            ce_sae, kl_sae = ce_kl(_full_forward(lm, ids, site, lambda _h, r=recon: r)[0])
            for name, value in (("ce_clean", ce_clean), ("ce_zero", ce_zero), ("ce_sae", ce_sae),
                                ("kl_zero", kl_zero), ("kl_sae", kl_sae)):
                sums[key][name] += value
        n_ce, n_kl = n_ce + int(keep[:, :-1].sum()), n_kl + int(keep.sum())
    out = {}
    for key, totals in sums.items():
        means = {k: v / (n_ce if k.startswith("ce") else n_kl) for k, v in totals.items()}
        means["loss_recovered"] = (means["ce_zero"] - means["ce_sae"]) / (means["ce_zero"] - means["ce_clean"])
        means["kl_score"] = (means["kl_zero"] - means["kl_sae"]) / means["kl_zero"]
        out[key] = means
    return out


def _check_scores(lm: LoadedModel) -> None:
    last = len(lm.layers) - 1
    # layer 0 mlp_out resumes at layer 0 (a full forward), the last resid_post runs the head only
    sites = [HookSite(0, "mlp_out"), HookSite(1), HookSite(last, "attn_out"), HookSite(last)]
    ev = EvalSettings("t", DatasetRef("builtin:pyref", "test"), tokens=512, sparsity_tokens=256, ctx_len=64,
                      batch_size=4)
    saes = {site: {f"{site.layer}.{site.hook}.{seed}": build_sae(lm.d_model, SaeSettings(k=8, latents=96),
                                                                  torch.Generator().manual_seed(seed))
                   for seed in (0, 1)}  # two SAEs per site share their patched forwards
            for site in sites}
    got = score_core(lm, {key: (site, sae) for site, group in saes.items() for key, sae in group.items()}, ev)
    batches = _windows(lm, ev.batches(ev.tokens))
    for site, group in saes.items():
        for key, expected in _expected_downstream(lm, batches, site, group).items():
            for metric, value in expected.items():
                assert math.isfinite(value)
                assert got[key].metrics[metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (key, metric)


def test_scores_equal_full_forward_scores(lm):
    _check_scores(lm)


def test_scores_with_one_patch_per_forward(monkeypatch):
    """A memory budget too small for two patched copies: every patched run is its own forward."""
    monkeypatch.setattr(resume, "CPU_PATCH_BUDGET", 1)
    _check_scores(load_model(ModelRef("builtin:tiny-base"), torch.device("cpu")))
