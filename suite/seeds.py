"""Seeds aggregated: one row per layer (and SAE settings) across a grid's seed axis.

A seed axis trains the same SAE several times with different initialisation; the rows differ
only in their numbers, so showing them as separate layers misleads (and counting them as layers
inflates `n/N healthy`). Everything that shows layers (report formats, `sae-bench gate`'s
summary, the TUI's layer table) groups rows with `group_seeds` and reads:

- `LayerGroup.stat(eval, metric)`: a `Spread` (mean, sample standard deviation, min, max, n and
  the per-seed values) of the stored values, one per seed;
- `LayerGroup.healthy`, `passed_everywhere()`, `gate_metrics()`: the one verdict per layer under
  `HEALTH_RULE` (every seed must pass every applicable gate on every eval).

Without a seed axis a group holds one row and every aggregate is that row's stored value.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suite.report import Gate, LayerRow

HEALTH_RULE = ("a layer is healthy when every applicable gate passes on every eval dataset and, where the grid "
               "has a seed axis, on every seed")
HEALTH_RULE_SHORT = "healthy: every applicable gate passes on every eval and every seed"
SPREAD_RULE = "± is the sample standard deviation (n − 1) of the per-seed stored values"

SEED_POSITION = 8  # index of the seed in LayerRow.settings_key of a trained SAE

_SQRT_BITS = 2 * sys.float_info.mant_dig + 3  # as statistics' correctly rounded square root


def _scaled(values: tuple[float, ...] | list[float]) -> tuple[list[int], int] | None:
    """The finite floats as integers over one common power-of-two denominator (exact); None when
    there are none or any is not a finite float (statistics handles those)."""
    if not values or not all(type(v) is float for v in values):
        return None
    try:
        ratios = [v.as_integer_ratio() for v in values]
    except (OverflowError, ValueError):  # infinity, NaN
        return None
    den = max(d for _, d in ratios)  # every denominator is a power of two, so the largest is a multiple of all
    return [n * (den // d) for n, d in ratios], den


def exact_mean(values: tuple[float, ...] | list[float]) -> float:
    """`statistics.mean` (the exact mean, rounded once), without its Fractions: ~20x faster,
    and equal to it bit for bit (Python's int / int is correctly rounded)."""
    scaled = _scaled(values)
    if scaled is None:
        return statistics.mean(values)
    nums, den = scaled
    return sum(nums) / (den * len(nums))


def exact_stdev(values: tuple[float, ...] | list[float]) -> float:
    """`statistics.stdev` (the exact sample variance, correctly rounded square root), without its
    Fractions; equal to it bit for bit."""
    scaled = _scaled(values)
    if scaled is None or len(values) < 2:
        return statistics.stdev(values)
    return _stdev(*scaled)


def _moments(values: tuple[float, ...]) -> tuple[float, float | None]:
    """(exact_mean, exact_stdev or None for one value), sharing the exact integers."""
    scaled = _scaled(values)
    if scaled is None:
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None
    nums, den = scaled
    return sum(nums) / (den * len(nums)), _stdev(nums, den) if len(nums) > 1 else None


def _stdev(nums: list[int], den: int) -> float:
    count = len(nums)
    total = sum(nums)
    top = count * sum(n * n for n in nums) - total * total  # variance = top / bottom, exactly
    bottom = count * (count - 1) * den * den
    if top == 0:
        return 0.0
    shift = (top.bit_length() - bottom.bit_length() - _SQRT_BITS) // 2
    if shift >= 0:
        root = _sqrt_round_to_odd(top, bottom << 2 * shift) << shift
        return root / 1
    return _sqrt_round_to_odd(top << -2 * shift, bottom) / (1 << -shift)


def _sqrt_round_to_odd(n: int, m: int) -> int:
    """floor(sqrt(n / m)), its last bit set when inexact (so the final rounding to float is correct)."""
    root = math.isqrt(n // m)
    return root | (root * root * m != n)


@dataclass(frozen=True)
class Spread:
    """One metric of one layer on one eval across seeds; every field is an aggregate of `values`."""

    values: tuple[float, ...]  # one stored value per seed, in seed order

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self._moments()[0]

    @property
    def std(self) -> float | None:
        """Sample standard deviation; None for a single seed (no spread to state)."""
        return self._moments()[1]

    def _moments(self) -> tuple[float, float | None]:
        """Computed once (a report reads them many times); kept beside the frozen fields."""
        moments = self.__dict__.get("_cached_moments")
        if moments is None:
            moments = _moments(self.values)
            object.__setattr__(self, "_cached_moments", moments)
        return moments

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def spread(values: list[float | None]) -> Spread | None:
    """The spread of the known values (None and NaN are missing, never zero); None when none."""
    known = tuple(v for v in values if v is not None and not math.isnan(v))
    return Spread(known) if known else None


def gate_verdict(gates: Iterable[Gate]) -> tuple[list[str], list[str]]:
    """(gated metrics that apply, those of them passed wherever they apply): one SAE's gates, or
    a layer's over every seed; a layer is healthy when the two are the same length."""
    gates = list(gates)
    metrics = sorted({g.metric for g in gates if g.passed is not None})
    return metrics, [m for m in metrics if all(g.passed for g in gates if g.metric == m and g.passed is not None)]


def balance(mean_metric: Callable[[str], float | None]) -> float:
    """The weakest of mean loss recovered, mean explained variance and mean share of live latents
    (the `balanced` pick's rule), from a row's or a layer's `mean_metric`."""
    parts = [mean_metric("loss_recovered"), mean_metric("explained_variance")]
    dead = mean_metric("dead_fraction")
    parts.append(None if dead is None else 1 - dead)
    known = [p for p in parts if p is not None]
    return min(known) if known else -math.inf


def without_seed(settings_key: tuple) -> tuple:
    if settings_key and settings_key[0] == "imported":
        return settings_key
    return settings_key[:SEED_POSITION] + settings_key[SEED_POSITION + 1:]


@dataclass
class LayerGroup:
    """The rows of one model's layer and SAE settings that differ only in seed (one row without a seed axis)."""

    rows: list[LayerRow]  # ordered by seed
    # aggregates already computed, keyed with the number of rows: every format asks for the same
    # spreads and verdicts many times, and 10,000 SAEs made recomputing them most of a report's time
    _memo: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """`compute()` once per key (and set of rows); for aggregates of this group that never change."""
        key = (*key, len(self.rows))
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def first(self) -> LayerRow:
        return self.rows[0]

    @property
    def layer(self) -> int:
        return self.first.layer

    @property
    def model(self) -> str:
        return self.first.model

    @property
    def hook(self) -> str:
        return self.first.hook

    @property
    def settings_key(self) -> tuple:
        return without_seed(self.first.settings_key)

    @property
    def seeds(self) -> list[int | None]:
        return [row.seed for row in self.rows]

    @property
    def sae_ids(self) -> list[str]:
        return [row.sae_id for row in self.rows]

    @property
    def has_seeds(self) -> bool:
        return len(self.rows) > 1

    def label(self, with_settings: bool) -> str:
        return self.first.label(with_settings)

    def eval_names(self) -> list[str]:
        return list(self.memo(("evals",), lambda: sorted({name for row in self.rows for name in row.evals})))

    def stat(self, eval_name: str, metric: str) -> Spread | None:
        return self.memo(("stat", eval_name, metric), lambda: spread(
            [row.evals[eval_name].get(metric) for row in self.rows if eval_name in row.evals]))

    def interval(self, eval_name: str, metric: str) -> tuple[float, float] | None:
        """The stored 95% interval; only for a single seed (intervals of different seeds are not pooled)."""
        if self.has_seeds or eval_name not in self.first.evals:
            return None
        return self.first.evals[eval_name].intervals.get(metric)

    def gate_metrics(self) -> list[str]:
        return list(self._verdict()[0])

    def passed_everywhere(self) -> list[str]:
        """Gated metrics that pass on every eval of every seed where they apply."""
        return list(self._verdict()[1])

    def _verdict(self) -> tuple[list[str], list[str]]:
        return self.memo(("verdict",), lambda: gate_verdict(g for row in self.rows for g in row.gates))

    @property
    def healthy(self) -> bool:
        return len(self.passed_everywhere()) == len(self.gate_metrics())

    @property
    def healthy_seeds(self) -> int:
        return sum(row.healthy for row in self.rows)

    def failed_gates(self) -> list[tuple[int | None, Gate]]:
        return [(row.seed, g) for row in self.rows for g in row.failed_gates()]

    def not_applicable(self) -> list[Gate]:
        return [g for row in self.rows for g in row.not_applicable()]

    def mean_metric(self, metric: str) -> float | None:
        """Mean over evals of the across-seed means (the mean of every seed's value when seeds cover every eval)."""
        def compute() -> float | None:
            means = [s.mean for name in self.eval_names() if (s := self.stat(name, metric)) is not None]
            return exact_mean(means) if means else None

        return self.memo(("mean", metric), compute)

    def balance(self) -> float:
        return balance(self.mean_metric)


def group_seeds(rows: list[LayerRow]) -> list[LayerGroup]:
    """Group rows of one model by (layer, hook, settings without seed), keeping first-seen order."""
    groups: dict[tuple, LayerGroup] = {}
    for row in rows:
        key = (row.model, row.layer, row.hook, without_seed(row.settings_key))
        groups.setdefault(key, LayerGroup([])).rows.append(row)
    for group in groups.values():
        group.rows.sort(key=lambda r: (r.seed is None, r.seed or 0, r.sae_id))
    return list(groups.values())


def has_seed_axis(groups: list[LayerGroup]) -> bool:
    return any(group.has_seeds for group in groups)
