"""Model-vs-model comparison: layers matched by (layer, hook, SAE settings without the seed),
deltas of the (across-seed mean) values, and significance from the stored intervals."""

from __future__ import annotations

from dataclasses import dataclass

from suite.report import EvalCell, ModelReport, Report, seed_cell
from suite.report_numbers import num, pct, points, signed
from suite.seeds import LayerGroup, exact_mean


def _apart(ia: tuple[float, float] | None, ib: tuple[float, float] | None) -> bool | None:
    if ia is None or ib is None:
        return None
    return ia[1] < ib[0] or ib[1] < ia[0]


@dataclass
class LayerDelta:
    layer: int
    label: str
    eval_name: str
    a: EvalCell  # across-seed means where there are seeds
    b: EvalCell
    a_group: LayerGroup | None = None
    b_group: LayerGroup | None = None

    def delta(self, metric: str) -> float | None:
        va, vb = self.a.get(metric), self.b.get(metric)
        return None if va is None or vb is None else vb - va

    def significant(self, metric: str) -> bool | None:
        """True when the two stored intervals do not overlap; None when either has none (as with seeds,
        whose intervals are not pooled: see `seed_significance`)."""
        return _apart(self.a.intervals.get(metric), self.b.intervals.get(metric))

    def seed_significance(self, metric: str) -> tuple[int, int] | None:
        """(seeds whose intervals do not overlap, seeds compared) over the seeds both models have."""
        if self.a_group is None or self.b_group is None or not (self.a_group.has_seeds or self.b_group.has_seeds):
            return None
        b_rows = {row.seed: row for row in self.b_group.rows}
        tests = []
        for row in self.a_group.rows:
            other = b_rows.get(row.seed)
            if other is None or self.eval_name not in row.evals or self.eval_name not in other.evals:
                continue
            apart = _apart(row.evals[self.eval_name].intervals.get(metric),
                           other.evals[self.eval_name].intervals.get(metric))
            if apart is not None:
                tests.append(apart)
        return (sum(tests), len(tests)) if tests else None

    def tests(self, metric: str) -> list[bool]:
        """Every significance test behind this row: one, or one per seed."""
        by_seed = self.seed_significance(metric)
        if by_seed is not None:
            return [True] * by_seed[0] + [False] * (by_seed[1] - by_seed[0])
        single = self.significant(metric)
        return [] if single is None else [single]


@dataclass
class SummaryRow:
    label: str
    a: str
    b: str
    delta: str
    verdict: str


@dataclass
class Comparison:
    a: ModelReport
    b: ModelReport
    layers: list[LayerDelta]
    summary: list[SummaryRow]


def _matched(a: ModelReport, b: ModelReport, with_settings: bool, eval_names: list[str]) -> list[LayerDelta]:
    by_key = {(g.layer, g.hook, g.settings_key): g for g in b.layers}
    deltas = []
    for group in a.layers:
        other = by_key.get((group.layer, group.hook, group.settings_key))
        if other is None:
            continue
        for eval_name in group.eval_names():
            if eval_name in other.eval_names() and eval_name in eval_names:
                deltas.append(LayerDelta(group.layer, group.label(with_settings), eval_name,
                                         seed_cell(group, eval_name), seed_cell(other, eval_name), group, other))
    return deltas


def _range(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    if not values:
        return "n/a"
    return f"{min(values) * scale:.2f}{unit}–{max(values) * scale:.2f}{unit}"


def _better(a_name: str, b_name: str, a: float | None, b: float | None, higher_is_better: bool) -> str:
    if a is None or b is None:
        return "n/a"
    if a == b:
        return "equal"
    b_wins = (b > a) == higher_is_better
    return f"{b_name if b_wins else a_name} better"


def _mean(values: list[float]) -> float | None:
    return exact_mean(values) if values else None


def compare(report: Report, a_name: str, b_name: str) -> Comparison:
    missing = [n for n in (a_name, b_name) if n not in report.models]
    if missing:
        raise KeyError(f"model(s) {', '.join(missing)} not in {report.db_path}; "
                       f"models there: {', '.join(report.models) or 'none'}")
    a, b = report.models[a_name], report.models[b_name]
    layers = _matched(a, b, report.with_settings, report.eval_names)
    tested = [t for d in layers for t in d.tests("loss_recovered")]
    per = "per-layer, per-seed" if report.seeded else "per-layer"
    lr_a, lr_b = _mean(a.values("loss_recovered")), _mean(b.values("loss_recovered"))
    dead_a, dead_b = a.values("dead_fraction"), b.values("dead_fraction")
    l0_a, l0_b = a.values("l0"), b.values("l0")
    ev_a, ev_b = _mean(a.values("explained_variance")), _mean(b.values("explained_variance"))
    n_a, n_b = len(a.layers), len(b.layers)
    summary = [
        SummaryRow("Fully healthy layers", f"{a.healthy_count}/{n_a}", f"{b.healthy_count}/{n_b}",
                   f"{b.healthy_count - a.healthy_count:+d}",
                   _better(a.name, b.name, a.healthy_count / max(n_a, 1), b.healthy_count / max(n_b, 1), True)),
        SummaryRow("Mean loss recovered", pct(lr_a), pct(lr_b), points(lr_a, lr_b),
                   _better(a.name, b.name, lr_a, lr_b, True)
                   + f"; {sum(tested)} of {len(tested)} {per} differences significant"),
        SummaryRow("Dead latents (range)", _range(dead_a, 100, "%"), _range(dead_b, 100, "%"),
                   points(_mean(dead_a), _mean(dead_b)) + " (means)",
                   _better(a.name, b.name, _mean(dead_a), _mean(dead_b), False)),
        SummaryRow("L0 (range)", _range(l0_a), _range(l0_b),
                   signed(exact_mean(l0_b) - exact_mean(l0_a)) + " (means)" if l0_a and l0_b else "n/a",
                   "lower is sparser; health is judged by the l0 gate"),
        SummaryRow("Mean explained variance", num(ev_a), num(ev_b),
                   signed(ev_b - ev_a) if ev_a is not None and ev_b is not None else "n/a",
                   _better(a.name, b.name, ev_a, ev_b, True)),
    ]
    return Comparison(a, b, layers, summary)
