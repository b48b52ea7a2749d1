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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import mean, stdev
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.report import Gate, LayerRow

HEALTH_RULE = ("a layer is healthy when every applicable gate passes on every eval dataset and, where the grid "
               "has a seed axis, on every seed")
HEALTH_RULE_SHORT = "healthy: every applicable gate passes on every eval and every seed"
SPREAD_RULE = "± is the sample standard deviation (n − 1) of the per-seed stored values"

SEED_POSITION = 8  # index of the seed in LayerRow.settings_key of a trained SAE


@dataclass(frozen=True)
class Spread:
    """One metric of one layer on one eval across seeds; every field is an aggregate of `values`."""

    values: tuple[float, ...]  # one stored value per seed, in seed order

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation; None for a single seed (no spread to state)."""
        return stdev(self.values) if self.n > 1 else None

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
        return sorted({name for row in self.rows for name in row.evals})

    def stat(self, eval_name: str, metric: str) -> Spread | None:
        return spread([row.evals[eval_name].get(metric) for row in self.rows if eval_name in row.evals])

    def interval(self, eval_name: str, metric: str) -> tuple[float, float] | None:
        """The stored 95% interval; only for a single seed (intervals of different seeds are not pooled)."""
        if self.has_seeds or eval_name not in self.first.evals:
            return None
        return self.first.evals[eval_name].intervals.get(metric)

    def gate_metrics(self) -> list[str]:
        return gate_verdict(g for row in self.rows for g in row.gates)[0]

    def passed_everywhere(self) -> list[str]:
        """Gated metrics that pass on every eval of every seed where they apply."""
        return gate_verdict(g for row in self.rows for g in row.gates)[1]

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
        means = [s.mean for name in self.eval_names() if (s := self.stat(name, metric)) is not None]
        return mean(means) if means else None

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
