"""Activation access: capture many hook sites in one forward pass, patch one site's output, and
mix activations through a shuffle buffer so SAE batches are not runs of one document.

A hook site is (hook point, layer): `resid_post` is the decoder block's output, `mlp_out` its MLP's
output and `attn_out` its attention's output. Sites are named like SAELens names hooks of
Hugging Face models: the module's path in `model.named_modules()` (e.g. `model.layers.16`,
`model.layers.16.mlp`, `model.layers.16.self_attn`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from harness.models import LoadedModel, ModelLoadError

# Submodule names holding a block's MLP and attention, by decoder family (Llama/Mistral/Qwen/
# Gemma: mlp/self_attn; GPT-2 and GPT-NeoX: mlp/attn or attention).
_SUBMODULES = {"mlp_out": ("mlp", "feed_forward", "ffn"), "attn_out": ("self_attn", "attn", "attention")}


@dataclass(frozen=True, order=True)
class HookSite:
    layer: int
    hook: str = "resid_post"


def site_module(lm: LoadedModel, site: HookSite) -> torch.nn.Module:
    block = lm.layers[site.layer]
    if site.hook == "resid_post":
        return block
    for name in _SUBMODULES[site.hook]:
        module = getattr(block, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ModelLoadError(f"cannot find the {site.hook} module of layer {site.layer} in "
                         f"{type(lm.model).__name__} (looked for {', '.join(_SUBMODULES[site.hook])})")


def hook_name(lm: LoadedModel, site: HookSite) -> str:
    """The module's path in the model, as SAELens names hooks of Hugging Face models."""
    target = site_module(lm, site)
    return next(name for name, module in lm.model.named_modules() if module is target)


class _StopForward(Exception):
    """Raised once every requested site has fired: nothing after it needs computing."""


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@torch.no_grad()
def capture(lm: LoadedModel, input_ids: torch.Tensor, sites: Iterable[HookSite | int], *, stop_early: bool = True,
            attention_mask: torch.Tensor | None = None) -> tuple[dict, torch.Tensor | None]:
    """Outputs [B, T, d] of the given sites (ints mean resid_post of that layer, keyed by the int);
    logits too unless `stop_early` cut the pass short after the last site fired."""
    wanted = {s: (s if isinstance(s, HookSite) else HookSite(s)) for s in sites}
    captured: dict = {}

    def hook_for(key):
        def hook(_module, _inputs, output):
            captured[key] = _hidden(output).detach()
            if stop_early and len(captured) == len(wanted):
                raise _StopForward

        return hook

    handles = [site_module(lm, site).register_forward_hook(hook_for(key)) for key, site in wanted.items()]
    logits = None
    try:
        mask = attention_mask.to(lm.device) if attention_mask is not None else None
        logits = lm.model(input_ids=input_ids.to(lm.device), attention_mask=mask, use_cache=False).logits
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured, logits


@contextmanager
def patched(lm: LoadedModel, site: HookSite | int, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, the site outputs `replace(original)` instead of its own output."""
    site = site if isinstance(site, HookSite) else HookSite(site)

    def hook(_module, _inputs, output):
        return _replace_hidden(output, replace(_hidden(output)))

    handle = site_module(lm, site).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class ShuffleBuffer:
    """Rows from several sites, kept aligned, emitted in shuffled batches.

    When the buffer holds `capacity` rows it is shuffled and its first half leaves as batches;
    the rest waits to be mixed with what comes next. Memory stays at `capacity` rows per site.
    """

    def __init__(self, capacity: int, batch: int, generator: torch.Generator):
        self.capacity = max(capacity, 2 * batch)
        self.batch = batch
        self.generator = generator
        self.rows: dict = {}

    def __len__(self) -> int:
        return next(iter(self.rows.values())).shape[0] if self.rows else 0

    def add(self, rows: dict) -> Iterator[dict]:
        self.rows = {k: torch.cat([self.rows[k], v]) if k in self.rows else v for k, v in rows.items()}
        if len(self) >= self.capacity:
            yield from self._emit(len(self) // 2)

    def drain(self) -> Iterator[dict]:
        """Everything left, the last batch possibly short."""
        yield from self._emit(len(self), whole_batches=False)

    def _emit(self, count: int, whole_batches: bool = True) -> Iterator[dict]:
        if not self.rows:
            return
        order = torch.randperm(len(self), generator=self.generator).to(next(iter(self.rows.values())).device)
        shuffled = {k: v[order] for k, v in self.rows.items()}
        if whole_batches:
            count = (count // self.batch) * self.batch
        self.rows = {k: v[count:] for k, v in shuffled.items()}
        for start in range(0, count, self.batch):
            yield {k: v[start:start + self.batch] for k, v in shuffled.items()}
