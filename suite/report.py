"""Comparison reports computed from the store: the numbers, the rules that pick layers, and the
model-vs-model verdicts. Rendering lives in `suite.report_format`; the TUI reuses this module.

Every number in a report is read from the store (metric values, intervals, gate verdicts) or is
a plain aggregate of rows the report shows (means, ranges, counts, across-seed spreads);
`check_consistency` proves the aggregates before anything is rendered, so a report cannot
contradict itself. Layers are `suite.seeds.LayerGroup`s: a grid's seeds are one layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from suite.gates import gate_label
from suite.report_numbers import num, pct, points, signed, sql_cell  # noqa: F401  (re-exported)
from suite.seeds import (HEALTH_RULE, LayerGroup, Spread, balance, exact_mean, gate_verdict, group_seeds,  # noqa: F401
                         has_seed_axis, without_seed)
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
    """One SAE's numbers on one eval, as stored; or one layer's across seeds (values are the
    across-seed means, `spreads` holds the per-seed values, and intervals are not pooled)."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    notes: dict[str, str]
    spreads: dict[str, Spread] = field(default_factory=dict)

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
    seed: int | None = None

    def gate_metrics(self) -> list[str]:
        """Gated metrics that apply (have a value on at least one eval)."""
        return gate_verdict(self.gates)[0]

    def passed_everywhere(self) -> list[str]:
        """Gates passed on every eval where they apply: the 'n' of n/N healthy."""
        return gate_verdict(self.gates)[1]

    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is False]

    def not_applicable(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is None]

    @property
    def healthy(self) -> bool:
        return len(self.passed_everywhere()) == len(self.gate_metrics())

    def mean_metric(self, metric: str) -> float | None:
        values = [v for cell in self.evals.values() if (v := cell.get(metric)) is not None]
        return exact_mean(values) if values else None

    def balance(self) -> float:
        return balance(self.mean_metric)

    def label(self, with_settings: bool) -> str:
        hook = f" {self.hook}" if self.hook != "resid_post" else ""
        if self.label_text:
            return f"{self.layer}{hook} ({self.label_text})"
        k = f" k={self.k}" if self.k is not None else ""
        suffix = f" ({self.arch}{k} n={self.latents} lr={self.lr:g})" if with_settings and self.lr is not None else ""
        return f"{self.layer}{hook}{suffix}"


def seed_cell(group: LayerGroup, eval_name: str) -> EvalCell:
    """A layer's numbers on one eval across its seeds: the stored cell itself for a single seed."""
    if not group.has_seeds:
        return group.first.evals[eval_name]
    return group.memo(("cell", eval_name), lambda: _seed_cell(group, eval_name))


def _seed_cell(group: LayerGroup, eval_name: str) -> EvalCell:
    metrics = sorted({m for row in group.rows if eval_name in row.evals for m in row.evals[eval_name].values})
    spreads = {m: s for m in metrics if (s := group.stat(eval_name, m)) is not None}
    notes = {m: r for row in group.rows if eval_name in row.evals for m, r in row.evals[eval_name].notes.items()
             if m not in spreads}
    return EvalCell({m: s.mean for m, s in spreads.items()}, {}, notes, spreads)


@dataclass
class ModelReport:
    name: str
    model_id: str
    rows: list[LayerRow]  # one per SAE (a seed axis gives several per layer)
    failed_jobs: list[tuple[int, str]] = field(default_factory=list)  # (layer, what has no result and why)
    _groups: tuple[int, list[LayerGroup]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def layers(self) -> list[LayerGroup]:
        """One entry per layer and SAE settings, seeds aggregated: what verdicts count (grouped once
        per set of rows: every format asks for it many times)."""
        if self._groups is None or self._groups[0] != len(self.rows):
            self._groups = (len(self.rows), group_seeds(self.rows))
        return list(self._groups[1])

    @property
    def healthy_count(self) -> int:
        return sum(group.healthy for group in self.layers)

    def pick(self, which: str) -> LayerGroup | None:
        layers = self.layers
        if not layers:
            return None

        def recovered(group: LayerGroup) -> float:
            value = group.mean_metric("loss_recovered")
            return -math.inf if value is None else value

        if which == "best":
            return max(layers, key=lambda g: (len(g.passed_everywhere()), recovered(g)))
        if which == "worst":
            return min(layers, key=lambda g: (len(g.passed_everywhere()), recovered(g)))
        return max(layers, key=lambda g: g.balance())

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
    with_settings: bool  # SAE settings other than the seed vary: labels name them
    runs: list[dict]
    provenance: Provenance | None = None
    probing_names: list[str] = field(default_factory=list)  # [probing.NAME] datasets scored (suite.report_probing)

    @property
    def seeded(self) -> bool:
        """The grid has a seed axis: some layer has several seeds."""
        return any(has_seed_axis(m.layers) for m in self.models.values())


_CURRENT = "select score_id from current_scores"
SETTINGS_COLUMNS = ("source", "hook", "arch", "k", "latents", "lr", "batch_size", "ctx_len", "train_tokens", "seed",
                    "train_dataset")


def settings_key(sae: dict) -> tuple:
    """`LayerRow.settings_key` of a `saes` row (needs `SETTINGS_COLUMNS`): what tells SAEs of one layer apart."""
    if sae["source"] != "trained":
        return ("imported", sae["source"])
    return (sae["hook"], sae["arch"], sae["k"], sae["latents"], sae["lr"], sae["batch_size"], sae["ctx_len"],
            sae["train_tokens"], sae["seed"], sae["train_dataset"])


def load_report(store: Store) -> Report:
    store.check_schema()
    with store.snapshot():  # every query below sees one state of the file, even while a run writes
        return _load_report(store)


def _load_report(store: Store) -> Report:
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
    cell_of = {s["score_id"]: cells[s["sae_id"]][s["eval_name"]] for s in scores}  # one lookup per metric row
    for score_id, metric, value, low, high in metric_rows:
        cell = cell_of[score_id]
        cell.values[metric] = value
        if low is not None:
            cell.intervals[metric] = (low, high)
    for score_id, metric, reason in note_rows:
        cell_of[score_id].notes[metric] = reason
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
        report.rows.append(LayerRow(
            sae["sae_id"], sae["model"], sae["model_id"], sae["layer"], sae["hook"], sae["arch"], sae["k"],
            sae["latents"], sae["lr"], settings_key(sae), sae["train_seconds"],
            dict(sorted(cells.get(sae["sae_id"], {}).items())), gates.get(sae["sae_id"], []),
            sae["label"] or "", sae["seed"] if sae["source"] == "trained" else None))
    all_rows = [row for m in models.values() for row in m.rows]
    eval_names = sorted({s["eval_name"] for s in scores if s["eval_kind"] == "core"})
    with_settings = len({without_seed(row.settings_key) for row in all_rows if row.settings_key[0] != "imported"}) > 1
    report = Report(str(store.path), sorted({s["suite"] for s in saes}), eval_names, models, with_settings, runs,
                    load_provenance(store, runs),
                    sorted({s["eval_name"] for s in scores if s["eval_kind"] == "sparse_probing"}))
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
            if row.arch == "topk":  # per token; BatchTopK keeps k on average (a threshold at inference)
                for name, cell in row.evals.items():
                    l0 = cell.get("l0")
                    if l0 is not None and l0 > row.k + 1e-9:
                        raise InconsistentReport(f"{model.name} layer {row.layer} {name}: L0 {l0} exceeds k={row.k}")
            for gate in row.gates:
                stored = row.evals.get(gate.eval_name, EvalCell({}, {}, {})).values.get(gate.metric)
                if gate.value is not None and stored is not None and not math.isclose(gate.value, stored):
                    raise InconsistentReport(f"gate value {gate.value} differs from stored {gate.metric} {stored}")
            gated, passed = gate_verdict(row.gates)
            if len(passed) > len(gated):
                raise InconsistentReport("more gates passed than exist")
        layers = model.layers
        if sum(len(g.rows) for g in layers) != len(model.rows) or model.healthy_count > len(layers):
            raise InconsistentReport(f"{model.name}: seed groups do not partition its SAEs")
        for group in layers:
            if len({row.layer for row in group.rows}) != 1:
                raise InconsistentReport(f"{model.name}: a seed group spans layers")
            if group.healthy and group.healthy_seeds != len(group.rows):
                raise InconsistentReport(f"{model.name} layer {group.layer}: healthy with an unhealthy seed")


_COMPARISON = {"Comparison", "LayerDelta", "SummaryRow", "compare"}


def __getattr__(name: str) -> object:
    """The comparison lives in `suite.report_compare`; it is importable from here as before."""
    if name in _COMPARISON:
        from suite import report_compare

        return getattr(report_compare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
