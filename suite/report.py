"""Comparison reports computed from the store: the numbers, the rules that pick layers, and the
model-vs-model verdicts. Rendering lives in `suite.report_format`; the TUI reuses this module.

Every number in a report is read from the store (metric values, intervals, gate verdicts) or is
a plain aggregate of rows the report shows (means, ranges, counts); `check_consistency` proves
the aggregates before anything is rendered, so a report cannot contradict itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import mean

from suite.gates import gate_label
from suite.store import Store

SIGNIFICANCE = "95% bootstrap intervals over eval sequences do not overlap"

RULES = {
    "best": "most gates passed on every eval, then highest mean loss recovered",
    "balanced": ("highest weakest-of (mean loss recovered, mean share of live latents, mean explained "
                 "variance): the layer with no weak side"),
    "worst": "fewest gates passed on every eval, then lowest mean loss recovered",
}


@dataclass
class EvalCell:
    """One SAE's numbers on one eval, as stored."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    notes: dict[str, str]

    def get(self, metric: str) -> float | None:
        value = self.values.get(metric)
        return None if value is None or math.isnan(value) else value


@dataclass
class Gate:
    eval_name: str
    metric: str
    op: str
    low: float | None
    high: float | None
    value: float | None
    passed: bool | None
    reason: str | None
    allowed_to_fail: bool

    def describe(self) -> str:
        return gate_label(self.metric, self.op, self.low, self.high)


@dataclass
class LayerRow:
    """One finished SAE of a model, with its current scores."""

    sae_id: str
    model: str
    model_id: str
    layer: int
    hook: str
    arch: str | None
    k: int | None
    latents: int | None
    lr: float | None
    settings_key: tuple
    train_seconds: float | None
    evals: dict[str, EvalCell]  # eval name -> cell; 'absorption' included when scored
    gates: list[Gate]
    label_text: str = ""  # [saes.NAME] of an imported SAE

    def gate_metrics(self) -> list[str]:
        """Gated metrics that apply (have a value on at least one eval)."""
        return sorted({g.metric for g in self.gates if g.passed is not None})

    def passed_everywhere(self) -> list[str]:
        """Gates passed on every eval where they apply: the 'n' of n/N healthy."""
        return [m for m in self.gate_metrics()
                if all(g.passed for g in self.gates if g.metric == m and g.passed is not None)]

    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is False]

    def not_applicable(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is None]

    @property
    def healthy(self) -> bool:
        return len(self.passed_everywhere()) == len(self.gate_metrics())

    def mean_metric(self, metric: str) -> float | None:
        values = [v for cell in self.evals.values() if (v := cell.get(metric)) is not None]
        return mean(values) if values else None

    def balance(self) -> float:
        parts = [self.mean_metric("loss_recovered"), self.mean_metric("explained_variance")]
        dead = self.mean_metric("dead_fraction")
        parts.append(None if dead is None else 1 - dead)
        known = [p for p in parts if p is not None]
        return min(known) if known else -math.inf

    def label(self, with_settings: bool) -> str:
        hook = f" {self.hook}" if self.hook != "resid_post" else ""
        if self.label_text:
            return f"{self.layer}{hook} ({self.label_text})"
        k = f" k={self.k}" if self.k is not None else ""
        suffix = f" ({self.arch}{k} n={self.latents} lr={self.lr:g})" if with_settings and self.lr is not None else ""
        return f"{self.layer}{hook}{suffix}"


@dataclass
class ModelReport:
    name: str
    model_id: str
    rows: list[LayerRow]
    failed_jobs: list[tuple[int, str]] = field(default_factory=list)  # (layer, what has no result and why)

    @property
    def healthy_count(self) -> int:
        return sum(row.healthy for row in self.rows)

    def pick(self, which: str) -> LayerRow | None:
        if not self.rows:
            return None

        def recovered(row: LayerRow) -> float:
            value = row.mean_metric("loss_recovered")
            return -math.inf if value is None else value

        if which == "best":
            return max(self.rows, key=lambda r: (len(r.passed_everywhere()), recovered(r)))
        if which == "worst":
            return min(self.rows, key=lambda r: (len(r.passed_everywhere()), recovered(r)))
        return max(self.rows, key=lambda r: r.balance())

    def values(self, metric: str) -> list[float]:
        """The metric over every (row, eval) cell shown, in order; the basis of means and ranges."""
        return [v for row in self.rows for cell in row.evals.values() if (v := cell.get(metric)) is not None]


@dataclass
class Provenance:
    """What produced the numbers: the last run's software and device, each model's weights and
    each eval stream's fingerprint, as stored."""

    run: dict | None
    models: list[dict]  # model, model_id, model_sha
    evals: list[dict]  # eval_name, eval_dataset, dataset_fingerprint, scores


@dataclass
class Report:
    db_path: str
    suites: list[str]
    eval_names: list[str]  # dataset evals (absorption is shown in its own column)
    models: dict[str, ModelReport]
    with_settings: bool
    runs: list[dict]
    provenance: Provenance | None = None


_CURRENT = "select score_id from current_scores"


def load_report(store: Store) -> Report:
    store.check_schema()
    saes = store.query_dicts("select * from saes order by model, layer, hook, arch, k, latents, lr, sae_id")
    scores = store.query_dicts("select score_id, sae_id, eval_name, eval_kind from current_scores")
    metric_rows = store.query(f"select score_id, metric, value, ci_low, ci_high from metrics where score_id in ({_CURRENT})")
    note_rows = store.query(f"select score_id, metric, reason from metric_notes where score_id in ({_CURRENT})")
    gate_rows = store.query_dicts(f"select * from gates where score_id in ({_CURRENT}) order by metric")
    failed_scores = store.query_dicts(
        "select s.sae_id, s.eval_name, s.error from scores s where s.status = 'failed' and not exists "
        "(select 1 from current_scores c where c.sae_id = s.sae_id and c.eval_name = s.eval_name)")
    runs = store.query_dicts("select * exclude (spec_toml) from runs order by started_at")
    by_score = {s["score_id"]: s for s in scores}
    cells: dict[str, dict[str, EvalCell]] = {}
    for score in scores:
        cells.setdefault(score["sae_id"], {})[score["eval_name"]] = EvalCell({}, {}, {})
    for score_id, metric, value, low, high in metric_rows:
        s = by_score[score_id]
        cell = cells[s["sae_id"]][s["eval_name"]]
        cell.values[metric] = value
        if low is not None:
            cell.intervals[metric] = (low, high)
    for score_id, metric, reason in note_rows:
        s = by_score[score_id]
        cells[s["sae_id"]][s["eval_name"]].notes[metric] = reason
    gates: dict[str, list[Gate]] = {}
    for g in gate_rows:
        s = by_score[g["score_id"]]
        gates.setdefault(s["sae_id"], []).append(Gate(
            s["eval_name"], g["metric"], g["op"], g["threshold_min"], g["threshold_max"], g["value"],
            g["passed"], g["reason"], g["allowed_to_fail"]))
    models: dict[str, ModelReport] = {}
    for sae in saes:
        report = models.setdefault(sae["model"], ModelReport(sae["model"], sae["model_id"], []))
        if sae["status"] != "done":
            error = (sae["error"] or "").splitlines()[0] if sae["error"] else ""
            report.failed_jobs.append((sae["layer"], f"{sae['status']}: {error}"))
            continue
        for failed in failed_scores:
            if failed["sae_id"] == sae["sae_id"]:
                error = (failed["error"] or "").splitlines()[0]
                report.failed_jobs.append((sae["layer"], f"{failed['eval_name']} not scored: {error}"))
        if sae["source"] != "trained":
            settings_key: tuple = ("imported", sae["source"])
        else:
            settings_key = (sae["hook"], sae["arch"], sae["k"], sae["latents"], sae["lr"], sae["batch_size"],
                            sae["ctx_len"], sae["train_tokens"], sae["seed"], sae["train_dataset"])
        report.rows.append(LayerRow(
            sae["sae_id"], sae["model"], sae["model_id"], sae["layer"], sae["hook"], sae["arch"], sae["k"],
            sae["latents"], sae["lr"], settings_key, sae["train_seconds"],
            dict(sorted(cells.get(sae["sae_id"], {}).items())), gates.get(sae["sae_id"], []),
            sae["label"] or ""))
    all_rows = [row for m in models.values() for row in m.rows]
    eval_names = sorted({s["eval_name"] for s in scores if s["eval_kind"] == "core"})
    with_settings = len({row.settings_key for row in all_rows if row.settings_key[0] != "imported"}) > 1
    report = Report(str(store.path), sorted({s["suite"] for s in saes}), eval_names, models, with_settings, runs,
                    load_provenance(store, runs))
    check_consistency(report)
    return report


def load_provenance(store: Store, runs: list[dict]) -> Provenance:
    models = store.query_dicts(
        "select model, model_id, list(distinct model_sha order by model_sha) filter (where model_sha is not null) "
        "as model_sha from saes where status = 'done' group by all order by model")
    evals = store.query_dicts(
        "select eval_name, eval_dataset, list(distinct dataset_fingerprint order by dataset_fingerprint) filter "
        "(where dataset_fingerprint is not null) as fingerprints, count(*) as scores from current_scores "
        "group by all order by eval_name")
    return Provenance(runs[-1] if runs else None, models, evals)


class InconsistentReport(AssertionError):
    pass


def check_consistency(report: Report) -> None:
    """Invariants every report must satisfy; violating one is a bug, never printed."""
    for model in report.models.values():
        for row in model.rows:
            if row.arch in ("topk", "batchtopk"):
                for name, cell in row.evals.items():
                    l0 = cell.get("l0")
                    if l0 is not None and l0 > row.k + 1e-9:
                        raise InconsistentReport(f"{model.name} layer {row.layer} {name}: L0 {l0} exceeds k={row.k}")
            for gate in row.gates:
                stored = row.evals.get(gate.eval_name, EvalCell({}, {}, {})).values.get(gate.metric)
                if gate.value is not None and stored is not None and not math.isclose(gate.value, stored):
                    raise InconsistentReport(f"gate value {gate.value} differs from stored {gate.metric} {stored}")
            if len(row.passed_everywhere()) > len(row.gate_metrics()):
                raise InconsistentReport("more gates passed than exist")


# ------------------------------------------------------------------ comparison


@dataclass
class LayerDelta:
    layer: int
    label: str
    eval_name: str
    a: EvalCell
    b: EvalCell

    def delta(self, metric: str) -> float | None:
        va, vb = self.a.get(metric), self.b.get(metric)
        return None if va is None or vb is None else vb - va

    def significant(self, metric: str) -> bool | None:
        """True when the two intervals do not overlap; None when either has no interval."""
        ia, ib = self.a.intervals.get(metric), self.b.intervals.get(metric)
        if ia is None or ib is None:
            return None
        return ia[1] < ib[0] or ib[1] < ia[0]


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
    by_key = {(row.layer, row.settings_key): row for row in b.rows}
    deltas = []
    for row in a.rows:
        other = by_key.get((row.layer, row.settings_key))
        if other is None:
            continue
        for eval_name in row.evals:
            if eval_name in other.evals and eval_name in eval_names:
                deltas.append(LayerDelta(row.layer, row.label(with_settings), eval_name, row.evals[eval_name],
                                         other.evals[eval_name]))
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


def compare(report: Report, a_name: str, b_name: str) -> Comparison:
    missing = [n for n in (a_name, b_name) if n not in report.models]
    if missing:
        raise KeyError(f"model(s) {', '.join(missing)} not in {report.db_path}; "
                       f"models there: {', '.join(report.models) or 'none'}")
    a, b = report.models[a_name], report.models[b_name]
    layers = _matched(a, b, report.with_settings, report.eval_names)
    significant = [d.significant("loss_recovered") for d in layers]
    tested = [s for s in significant if s is not None]
    lr_a, lr_b = a.values("loss_recovered"), b.values("loss_recovered")
    dead_a, dead_b = a.values("dead_fraction"), b.values("dead_fraction")
    l0_a, l0_b = a.values("l0"), b.values("l0")
    ev_a, ev_b = a.values("explained_variance"), b.values("explained_variance")
    mean_lr_a, mean_lr_b = (mean(lr_a) if lr_a else None), (mean(lr_b) if lr_b else None)
    summary = [
        SummaryRow("Fully healthy layers", f"{a.healthy_count}/{len(a.rows)}", f"{b.healthy_count}/{len(b.rows)}",
                   f"{b.healthy_count - a.healthy_count:+d}",
                   _better(a.name, b.name, a.healthy_count / max(len(a.rows), 1),
                           b.healthy_count / max(len(b.rows), 1), True)),
        SummaryRow("Mean loss recovered", pct(mean_lr_a), pct(mean_lr_b), points(mean_lr_a, mean_lr_b),
                   _better(a.name, b.name, mean_lr_a, mean_lr_b, True)
                   + f"; {sum(tested)} of {len(tested)} per-layer differences significant"),
        SummaryRow("Dead latents (range)", _range(dead_a, 100, "%"), _range(dead_b, 100, "%"),
                   points(mean(dead_a) if dead_a else None, mean(dead_b) if dead_b else None) + " (means)",
                   _better(a.name, b.name, mean(dead_a) if dead_a else None, mean(dead_b) if dead_b else None, False)),
        SummaryRow("L0 (range)", _range(l0_a), _range(l0_b),
                   signed(mean(l0_b) - mean(l0_a)) + " (means)" if l0_a and l0_b else "n/a",
                   "lower is sparser; health is judged by the l0 gate"),
        SummaryRow("Mean explained variance", num(mean(ev_a) if ev_a else None), num(mean(ev_b) if ev_b else None),
                   signed(mean(ev_b) - mean(ev_a)) if ev_a and ev_b else "n/a",
                   _better(a.name, b.name, mean(ev_a) if ev_a else None, mean(ev_b) if ev_b else None, True)),
    ]
    return Comparison(a, b, layers, summary)


# ------------------------------------------------------------------ number formats shared by renderers


def sql_cell(value: object) -> str:
    """A query result value as shown by `sae-bench sql` and the TUI's SQL console."""
    if value is None:
        return "NULL"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def pct(value: float | None) -> str:
    return "n/a" if _missing(value) else f"{100 * value:.2f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if _missing(value) else f"{value:.{digits}f}"


def signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


def points(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{100 * (b - a):+.2f} pts"

