"""Bounds that keep a spec that validates from crashing later.

Values beyond a store column (32-bit integers), beyond what can be held in memory, repeated
values that would train one SAE twice, and grids too large to plan are refused at `validate`,
each with its field path and the reason for the limit. The checks that need a model's shape
(layers, d_model, positions) read it offline (`harness.models.model_shape`) and are skipped for
a hub model not in the local cache; the run checks those when it loads the model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

INT32_MAX = 2**31 - 1  # INTEGER columns of the store: layer, k, latents, ctx_len, batch_size, seed
MAX_TOKENS = 2**53  # token counts stay exact as floats and in JSON (the store's BIGINT holds more)
MAX_LATENTS = 2**24  # 16,777,216: OpenAI's largest published SAE; beyond that one SAE's weights alone outgrow a GPU
MAX_SAES = 100_000  # SAEs one spec may declare: validate and plan stay within seconds
MAX_TRAINING_GIB = float(os.environ.get("SAE_BENCH_MAX_TRAINING_GIB", 256))  # one training stream's SAE memory
MAX_SHOWN = 80  # characters of an offending value quoted in an error

# Why a field has its upper bound (shown in the error after "expected a value <= N").
BOUND_REASONS = {
    INT32_MAX: "the results store keeps it as a 32-bit integer",
    MAX_TOKENS: "2^53: token counts beyond it lose precision",
    MAX_LATENTS: "2^24, larger than any published SAE",
}


def shown(value: Any) -> str:
    """A value for an error message: repr, cut short (a spec may hold huge or deeply nested values)."""
    try:
        text = repr(value)
    except RecursionError:
        text = "a deeply nested value"
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 5] + " ...]"


def axis_key(value: Any) -> str:
    """Equal axis values (dataset tables included) give equal keys."""
    return json.dumps(value, sort_keys=True, default=str)


def repeated(values: Iterable[Any]) -> list[Any]:
    seen, again = set(), []
    for value in values:
        key = axis_key(value)
        if key in seen and value not in again:
            again.append(value)
        seen.add(key)
    return again


def _axes(section: Any) -> list[int]:
    return [len(v) for v in (section.model_dump().values() if section is not None else []) if isinstance(v, list)]


def grid_size(model: Any) -> int:
    """SAEs the spec declares, from the axis lengths alone (nothing is expanded)."""
    if model.grid is None or model.train is None or model.sae is None:
        trained = 0
    else:
        train_axes = [len(getattr(model.train, name)) for name in
                      ("dataset", "tokens", "ctx_len", "batch_size", "lr", "seed", "lr_warmup_steps", "buffer_batches")]
        sae_axes = [len(getattr(model.sae, name)) for name in type(model.sae).model_fields
                    if isinstance(getattr(model.sae, name), list)]
        trained = math.prod([len(model.grid.models), len(model.grid.layers), len(model.grid.hook),
                             *train_axes, *sae_axes])
    return trained + len(model.saes)


def spec_problems(model: Any) -> list[str]:
    """Checks over the whole validated spec that need no model: grid size and SAEs or scores
    that two spellings would make twice."""
    problems = []
    size = grid_size(model)
    if size > MAX_SAES:
        problems.append(f"grid: declares {size:,} SAEs; the limit is {MAX_SAES:,} per spec (plan and results stay "
                        f"fast): split it into several specs or shorten the axes")
    for section_name in ("train", "sae"):
        section = getattr(model, section_name)
        for field, values in (section.model_dump().items() if section is not None else []):
            if isinstance(values, list) and (again := repeated(values)):  # equal once defaults are filled in
                problems.append(f"{section_name}.{field}: values must not repeat: "
                                f"{', '.join(shown(v) for v in again)} given more than once")
    same: dict[str, list[str]] = {}
    for name, section in model.models.items():
        same.setdefault(axis_key([section.id, section.revision, section.dtype, section.gguf_file]), []).append(name)
    for names in same.values():
        if len(names) > 1:
            problems.append(f"models: {', '.join(f'models.{n}' for n in names)} are the same model (id, revision, "
                            f"dtype): its SAEs would be trained twice; keep one alias")
    evals: dict[str, list[str]] = {}
    for name, section in model.eval.items():
        evals.setdefault(axis_key(section.model_dump()), []).append(name)
    for names in evals.values():
        if len(names) > 1:
            problems.append(f"eval: {', '.join(f'eval.{n}' for n in names)} have the same settings: each SAE would be "
                            f"scored twice; keep one")
    imports: dict[str, list[str]] = {}
    for name, section in model.saes.items():
        imports.setdefault(axis_key(section.model_dump()), []).append(name)
    for names in imports.values():
        if len(names) > 1:
            problems.append(f"saes: {', '.join(f'saes.{n}' for n in names)} are the same SAE; keep one")
    return problems


def training_bytes(d_model: int | None, batch_tokens: int, buffer_batches: int, sites: int,
                   latents: list[int]) -> int:
    """Memory one training stream's SAEs need at once (the model itself not included):
    fp32 weights, gradients and Adam's two moments of every SAE (they train together), the
    largest SAE's step activations (pre-activations, latents and their gradients, B x latents
    each) and, per hook site, the shuffle buffer and its shuffled copy plus the captured batch."""
    d = d_model or 0
    weights = sum(16 * (2 * n * d + n + d) for n in latents)
    step = 12 * batch_tokens * max(latents, default=0)
    buffer = sites * 4 * d * batch_tokens * (2 * max(buffer_batches, 2) + 1)
    return weights + step + buffer


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
