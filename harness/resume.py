"""Patched forwards that resume at the patched layer instead of recomputing the layers before it.

SAEBench's core eval runs the whole model once per patch (zero ablation, each SAE), although
the layers before the patched site compute exactly what the clean run already computed. Here
the clean run keeps the residual stream where the patched runs will resume, and a patched run
is the model's own forward with the decoder layers before that point standing in: each returns
the kept clean hidden state without computing anything. Everything the model does around its
layers (embeddings, position ids, causal and sliding-window masks, rotary embeddings, final
norm, logit soft-capping, the LM head) is the model's own code, so the resumed run gives the
same logits as a full forward with the patch hooked in.

Where it resumes: a `resid_post` patch at layer L resumes at layer L+1 (the stand-in of layer
L returns the patched stream); an `mlp_out`/`attn_out` patch at layer L resumes at layer L from
the clean output of layer L-1, with the patch hooked into layer L's submodule. Families whose
forward only passes the hidden state from one decoder layer to the next (`RESUMABLE`, each
tested against the full forward in tests/test_resumed_forward.py) resume; any other model runs
the full forward with the patch hooked in (same numbers, no saving).

Several patches of one site run as one forward: the token batch is repeated and the patched
streams are stacked along the batch, as many per forward as `patches_per_forward` allows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from harness.activations import HookSite, site_module
from harness.models import LoadedModel

# `config.model_type` of the families whose decoder loop hands each layer only the previous
# layer's output (plus masks and position data computed before the loop).
RESUMABLE = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox"})

CPU_PATCH_BUDGET = 2 << 30  # bytes of logits and activations one batched CPU forward may hold
GPU_FREE_SHARE = 0.5  # share of the free GPU memory one batched forward may hold


def supports_resume(lm: LoadedModel) -> bool:
    return getattr(lm.model.config, "model_type", None) in RESUMABLE


def resume_layer(lm: LoadedModel, site: HookSite) -> int:
    """Index of the first decoder layer a patched run of `site` computes (0: the full forward)."""
    if not supports_resume(lm):
        return 0
    return site.layer + 1 if site.hook == "resid_post" else site.layer


def zero_run_is_one_position(lm: LoadedModel, site: HookSite) -> bool:
    """Whether the zero-ablated run of `site` has the same logits at every position, so that one
    position computes them all. A zeroed `resid_post` stream is the same vector at every position
    of every sequence, and the layers of a resumable family keep identical positions identical:
    norms, MLPs and projections act per position, and attention averages value vectors that are
    all equal whatever its (causal, rotary, windowed) weights. Zeroing `mlp_out`/`attn_out` leaves
    the layer's residual input, which differs between positions."""
    return site.hook == "resid_post" and supports_resume(lm)


@dataclass
class CleanRun:
    """The clean forward of a batch: logits, the output of every requested site, and the clean
    output (as the layer returned it, tuple or tensor) of each layer a patched run resumes after."""

    logits: torch.Tensor | None  # dropped once the caller has what it needs
    acts: dict[HookSite, torch.Tensor]
    layer_outputs: dict[int, object] = field(default_factory=dict)


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(template, hidden: torch.Tensor):
    return (hidden, *template[1:]) if isinstance(template, tuple) else hidden


@torch.no_grad()
def clean_run(lm: LoadedModel, input_ids: torch.Tensor, sites: Sequence[HookSite]) -> CleanRun:
    """One full forward capturing every site and the resume points of their patched runs."""
    acts: dict[HookSite, torch.Tensor] = {}
    outputs: dict[int, object] = {}
    handles = []

    def keep_site(site):
        def hook(_module, _inputs, output):
            acts[site] = _hidden(output).detach()
        return hook

    def keep_layer(index):
        def hook(_module, _inputs, output):
            outputs[index] = output
        return hook

    for site in sites:
        handles.append(site_module(lm, site).register_forward_hook(keep_site(site)))
    for index in sorted({resume_layer(lm, site) - 1 for site in sites} - {-1}):
        handles.append(lm.layers[index].register_forward_hook(keep_layer(index)))
    try:
        logits = lm.model(input_ids=input_ids, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    return CleanRun(logits, acts, outputs)


@contextmanager
def _standing_in(layers: Sequence[torch.nn.Module], output) -> Iterator[None]:
    """Within the block, every layer of `layers` returns `output` without computing anything.

    The stand-in is an instance `forward`, so the layer keeps its attributes (the loop may read
    e.g. `attention_type`) and its hooks; a `forward` already set on the instance (accelerate,
    torch.compile wrappers) is put back afterwards."""
    saved = [layer.__dict__.get("forward") for layer in layers]
    for layer in layers:
        layer.forward = lambda *_args, **_kwargs: output
    try:
        yield
    finally:
        for layer, previous in zip(layers, saved):
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


@torch.no_grad()
def patched_logits(lm: LoadedModel, input_ids: torch.Tensor, site: HookSite, replacements: Sequence[torch.Tensor],
                   clean: CleanRun) -> torch.Tensor:
    """Logits [n * B, T, V] of the runs with the site's output [B, T, d] replaced by each of the
    n `replacements` in turn (run i is rows i*B .. (i+1)*B), resumed where `resume_layer` says."""
    n = len(replacements)
    stacked = torch.cat(list(replacements)) if n > 1 else replacements[0]
    ids = input_ids.repeat(n, 1) if n > 1 else input_ids
    start = resume_layer(lm, site)
    with ExitStack() as stack:
        if start > 0 and site.hook == "resid_post":  # layer `site.layer` itself returns the patched stream
            template = clean.layer_outputs[start - 1]
            stack.enter_context(_standing_in(lm.layers[:start], _with_hidden(template, stacked)))
        else:
            if start > 0:  # layers before the site's layer return its clean input
                template = clean.layer_outputs[start - 1]
                hidden = _hidden(template)
                stack.enter_context(_standing_in(lm.layers[:start],
                                                 _with_hidden(template, hidden.repeat(n, 1, 1) if n > 1 else hidden)))
            handle = site_module(lm, site).register_forward_hook(
                lambda _m, _i, output: _with_hidden(output, stacked))
            stack.callback(handle.remove)
        return lm.model(input_ids=ids, use_cache=False).logits


def patches_per_forward(lm: LoadedModel, batch: int, ctx_len: int) -> int:
    """How many patched copies of a [batch, ctx_len] batch one forward may carry.

    Per copy: its logits in the model's dtype plus three fp32 tensors of that size (the float
    logits, their log-softmax and a temporary of the KL), and a generous 16 d_model-sized
    activations per token for the layers. The budget is `CPU_PATCH_BUDGET` on CPU and
    `GPU_FREE_SHARE` of the free memory on a GPU."""
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    element = torch.finfo(lm.dtype).bits // 8
    per_copy = batch * ctx_len * (vocab * (element + 12) + 16 * lm.d_model * element)
    if lm.device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(lm.device)
        budget = int(free * GPU_FREE_SHARE)
    else:
        budget = CPU_PATCH_BUDGET
    return max(1, budget // per_copy)
