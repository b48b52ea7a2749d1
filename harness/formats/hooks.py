"""Hook names of other tools, read as sae-bench hook sites (layer, resid_post | mlp_out | attn_out).

Three naming schemes meet here:
- SAELens for Hugging Face models names a hook by the module's path in `model.named_modules()`
  (`model.layers.16`, `model.layers.16.mlp`, `model.layers.16.self_attn`), as harness.activations;
- SAELens for TransformerLens models: `blocks.16.hook_resid_post`, `blocks.16.hook_mlp_out`,
  `blocks.16.hook_attn_out`, and `blocks.17.hook_resid_pre`, which is the same tensor as
  `blocks.16.hook_resid_post`;
- sparsify names a hook point by its path in `model.base_model` (sparsify/trainer.py: the layer
  list found by utils.get_layer_list, e.g. `layers.16`; custom hookpoints such as `h.3.attn`),
  i.e. the HF path without the base model's prefix.
"""

from __future__ import annotations

import re

from suite.jobs import HOOKS

# Submodule names of a block's MLP and attention across HF decoder families (harness.activations).
_HF_SUFFIX = {"": "resid_post", "mlp": "mlp_out", "feed_forward": "mlp_out", "ffn": "mlp_out",
              "self_attn": "attn_out", "attn": "attn_out", "attention": "attn_out"}
_TL_HOOK = {"hook_resid_post": "resid_post", "hook_mlp_out": "mlp_out", "hook_attn_out": "attn_out"}
_TL = re.compile(r"^blocks\.(\d+)\.(.+)$")
_HF = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<container>layers|h|blocks|layer)\.(?P<layer>\d+)(?:\.(?P<suffix>.+))?$")


class UnsupportedHook(ValueError):
    """A hook name we recognise as something sae-bench cannot read (e.g. an attention head's z)."""


def describe(layer: int, hook: str) -> str:
    return f"layer {layer} {hook}"


def site_of(hook_name: str) -> tuple[int, str] | None:
    """(layer, hook) a hook name reads, None if the name follows no scheme we know.

    Raises UnsupportedHook for names we recognise but cannot hook (hook_z, MLP inputs, embeddings).
    """
    name = hook_name.strip()
    if name in ("hook_embed", "hook_pos_embed", "embed_tokens") or name.endswith(".embed_tokens"):
        raise UnsupportedHook(f"{name!r} reads the embeddings; sae-bench reads {', '.join(HOOKS)} of a layer")
    match = _TL.match(name)
    if match and match.group(2).split(".")[-1].startswith("hook_"):
        layer, hook = int(match.group(1)), match.group(2)
        if hook in _TL_HOOK:
            return layer, _TL_HOOK[hook]
        if hook == "hook_resid_pre":
            if layer == 0:
                raise UnsupportedHook(f"{name!r} reads the embeddings; sae-bench reads {', '.join(HOOKS)} of a layer")
            return layer - 1, "resid_post"
        raise UnsupportedHook(f"{name!r} is not a hook sae-bench reads ({', '.join(HOOKS)}; "
                              "TransformerLens names: hook_resid_post, hook_mlp_out, hook_attn_out, hook_resid_pre)")
    match = _HF.match(name)
    if match is None:
        return None
    suffix = match.group("suffix") or ""
    if suffix not in _HF_SUFFIX:
        raise UnsupportedHook(f"{name!r} is not a hook sae-bench reads: it reads a block's output, its MLP's "
                              f"output or its attention's output ({', '.join(HOOKS)})")
    return int(match.group("layer")), _HF_SUFFIX[suffix]


def sparsify_hookpoint(hook_name: str) -> str:
    """sparsify's name for the module SAELens names `hook_name`: the path inside the base model
    (`model.layers.16` -> `layers.16`, `transformer.h.3.attn` -> `h.3.attn`)."""
    match = _HF.match(hook_name)
    if match is None:
        raise UnsupportedHook(f"cannot name {hook_name!r} as sparsify does (expected a path like model.layers.16)")
    return hook_name[len(match.group("prefix")) + 1:] if match.group("prefix") else hook_name
