"""Health thresholds and gate verdicts.

Defaults, and where they come from:
- `l0` in [20, 200]: the SAEBench README's recommended sparsity range.
- `loss_recovered >= 0.60`, `dead_fraction <= 0.20`: the conventions of the reference report our
  users write by hand (../shared/seed-report.md); SAEBench documents no healthy range for them.
- `absorption <= 0.35`: same source. Where absorption cannot be scored (a small model whose
  probes decode too few letters) the gate is "not applicable" with the reason, never a pass.
Every spec can override or add thresholds in `[health]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    metric: str
    min: float | None = None
    max: float | None = None

    @property
    def op(self) -> str:
        if self.min is not None and self.max is not None:
            return "between"
        return ">=" if self.min is not None else "<="

    def describe(self) -> str:
        if self.op == "between":
            return f"{self.metric} in [{self.min:g}, {self.max:g}]"
        if self.op == ">=":
            return f"{self.metric}>={self.min:g}"
        return f"{self.metric}<={self.max:g}"

    def passes(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("loss_recovered", min=0.60),
    Threshold("l0", min=20, max=200),
    Threshold("dead_fraction", max=0.20),
    Threshold("absorption", max=0.35),
)


@dataclass(frozen=True)
class GatePolicy:
    """What one job is gated on for one eval, and whether its failures may be tolerated."""

    thresholds: tuple[Threshold, ...]
    allow_fail: bool = False


@dataclass(frozen=True)
class GateResult:
    threshold: Threshold
    value: float | None
    passed: bool | None  # None: not applicable (no value, with a reason)
    reason: str = ""


def evaluate_gates(
    thresholds: tuple[Threshold, ...], metrics: dict[str, float], notes: dict[str, str] | None = None
) -> list[GateResult]:
    """One verdict per threshold; a metric without a value is 'not applicable', never a pass."""
    notes = notes or {}
    results = []
    for threshold in thresholds:
        value = metrics.get(threshold.metric)
        if value is None:
            reason = notes.get(threshold.metric, f"{threshold.metric} is not computed by this version")
            results.append(GateResult(threshold, None, None, reason))
        else:
            results.append(GateResult(threshold, value, threshold.passes(value)))
    return results
