"""Residual-stream access: capture many layers in one forward pass, patch one layer's output,
and mix activations through a shuffle buffer so SAE batches are not runs of one document."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from harness.models import LoadedModel


class _StopForward(Exception):
    """Raised by the deepest capture hook: nothing after that layer needs computing."""


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@torch.no_grad()
def capture(lm: LoadedModel, input_ids: torch.Tensor, layers: list[int], *, stop_early: bool = True,
            attention_mask: torch.Tensor | None = None) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
    """Outputs [B, T, d] of the given layers; logits too unless `stop_early` cut the pass short."""
    captured: dict[int, torch.Tensor] = {}
    deepest = max(layers)

    def hook_for(index: int):
        def hook(_module, _inputs, output):
            captured[index] = _hidden(output).detach()
            if stop_early and index == deepest:
                raise _StopForward

        return hook

    handles = [lm.layers[i].register_forward_hook(hook_for(i)) for i in layers]
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
def patched(lm: LoadedModel, layer: int, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, layer `layer` outputs `replace(original)` instead of its own output."""

    def hook(_module, _inputs, output):
        return _replace_hidden(output, replace(_hidden(output)))

    handle = lm.layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class ShuffleBuffer:
    """Rows from several layers, kept aligned, emitted in shuffled batches.

    When the buffer holds `capacity` rows it is shuffled and its first half leaves as batches;
    the rest waits to be mixed with what comes next. Memory stays at `capacity` rows per layer.
    """

    def __init__(self, capacity: int, batch: int, generator: torch.Generator):
        self.capacity = max(capacity, 2 * batch)
        self.batch = batch
        self.generator = generator
        self.rows: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return next(iter(self.rows.values())).shape[0] if self.rows else 0

    def add(self, rows: dict[int, torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
        self.rows = {k: torch.cat([self.rows[k], v]) if k in self.rows else v for k, v in rows.items()}
        if len(self) >= self.capacity:
            yield from self._emit(len(self) // 2)

    def drain(self) -> Iterator[dict[int, torch.Tensor]]:
        """Everything left, the last batch possibly short."""
        yield from self._emit(len(self), whole_batches=False)

    def _emit(self, count: int, whole_batches: bool = True) -> Iterator[dict[int, torch.Tensor]]:
        if not self.rows:
            return
        order = torch.randperm(len(self), generator=self.generator).to(next(iter(self.rows.values())).device)
        shuffled = {k: v[order] for k, v in self.rows.items()}
        if whole_batches:
            count = (count // self.batch) * self.batch
        self.rows = {k: v[count:] for k, v in shuffled.items()}
        for start in range(0, count, self.batch):
            yield {k: v[start:start + self.batch] for k, v in shuffled.items()}
