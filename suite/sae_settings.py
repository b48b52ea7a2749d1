"""[sae] per architecture: which keys each `arch` reads, and the grid of SaeSettings they declare.

`arch` is a grid axis like any other, so one [sae] table can declare TopK and ReLU SAEs together.
A key is accepted when some architecture of the axis reads it (suite.jobs.ARCH_FIELDS) and
refused, with its field path, when none does (`k` with only `relu`; `l1_coefficient` with only
`topk`). The grid is expanded per architecture over the keys that architecture reads, so
`arch = ["topk", "relu"]` with `k = [16, 32]` declares two TopK SAEs and one ReLU SAE, never two
identical ReLU SAEs. Keys not given take SaeSettings' defaults (the references' own).
"""

from __future__ import annotations

import itertools
from dataclasses import fields
from typing import Any

from suite.jobs import ARCH_FIELDS, SaeSettings

ARCHS = tuple(ARCH_FIELDS)
# Keys every architecture accepts: its size, and the silence that counts as dead (logs, AuxK).
COMMON = ("arch", "latents", "dead_tokens")
REQUIRED = {"topk": ("k",), "batchtopk": ("k",), "matryoshka_batchtopk": ("k",)}
_ORDER = [f.name for f in fields(SaeSettings)]


def widths_axis(value: Any) -> Any:
    """`matryoshka_widths = [64, 256, 1024]` is one value; `[[64, 1024], [128, 1024]]` an axis."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return value
    return [value]


def readers(key: str) -> list[str]:
    return [arch for arch, keys in ARCH_FIELDS.items() if key in keys]


def problems(values: dict[str, list[Any] | None]) -> list[str]:
    """`@key: reason` for each key the given architectures do not read or lack (spec.py's form)."""
    archs: list[str] = values.get("arch") or ["topk"]
    found = []
    for key, given in values.items():
        if given is None or key in COMMON or any(key in ARCH_FIELDS[a] for a in archs):
            continue
        where = readers(key)
        found.append(f"@{key}: not a setting of arch {' / '.join(archs)}"
                     + (f" (only {', '.join(where)} read{'s' * (len(where) == 1)} it)" if where else ""))
    for arch in archs:
        found += [f"@{key}: required for arch {arch!r}" for key in REQUIRED.get(arch, ())
                  if values.get(key) is None]
    latents = min(values.get("latents") or [0])
    k = values.get("k")
    if k and latents and max(k) > latents:
        found.append(f"@k: k={max(k)} exceeds latents={latents}: a TopK SAE keeps k of its latents")
    target = values.get("target_l0")
    if target and latents and max(target) > latents:
        found.append(f"@target_l0: {max(target):g} exceeds latents={latents}: at most every latent can fire")
    for widths in values.get("matryoshka_widths") or []:
        if any(b <= a for a, b in zip(widths, widths[1:])):
            found.append(f"@matryoshka_widths: {widths} must be strictly increasing (nested prefixes)")
        elif latents and widths and widths[-1] > latents:
            found.append(f"@matryoshka_widths: {widths[-1]} exceeds latents={latents}")
    return found


def expand(values: dict[str, list[Any] | None]) -> list[SaeSettings]:
    """Every SaeSettings the [sae] table declares: per architecture, the product of its keys."""
    out = []
    for arch in values.get("arch") or ["topk"]:
        keys = [k for k in _ORDER if k != "arch" and values.get(k) is not None
                and (k in ARCH_FIELDS[arch] or k == "latents")]
        fixed = {k: values[k][0] for k in COMMON[2:] if k not in keys and values.get(k) is not None}
        for combo in itertools.product(*(values[k] for k in keys)):
            out.append(SaeSettings(arch=arch, **fixed, **dict(zip(keys, combo))))
    return out
