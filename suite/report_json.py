"""The report as strict JSON, one documented shape (docs/report.md, `version` below).

Numbers are the stored values (or their across-seed aggregates, with every seed's value beside
them); a missing number is `null` with the stored reason next to it, never NaN or Infinity
(`json.dumps(allow_nan=False)` refuses any that slipped through).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from suite.report import RULES, SIGNIFICANCE, EvalCell, Gate, ModelReport, Report
from suite.report_compare import Comparison, LayerDelta
from suite.seeds import HEALTH_RULE, SPREAD_RULE, LayerGroup, exact_mean

VERSION = 1
NO_VALUE = "no value stored for this metric"


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _interval(cell: EvalCell, metric: str) -> list[float] | None:
    interval = cell.intervals.get(metric)
    if interval is None:
        return None
    low, high = interval
    if _number(low) is None or _number(high) is None:
        return None
    return [low, high]


def _metric(group: LayerGroup, eval_name: str, metric: str,
            cells: list[tuple[int | None, str, EvalCell]]) -> dict[str, Any]:
    """One metric of one layer on one eval: the across-seed aggregate and every seed's value
    (`cells`: each seed's (seed, sae_id, cell) on this eval, in seed order)."""
    seeds = []
    first_reason = None
    for seed, sae_id, cell in cells:
        value = cell.values.get(metric)
        if value is not None and not math.isfinite(value):
            value = None
        reason = None
        if value is None:
            reason = cell.notes.get(metric, NO_VALUE)
            if reason and first_reason is None:
                first_reason = reason
        seeds.append({"seed": seed, "sae_id": sae_id, "value": value, "reason": reason,
                      "ci": _interval(cell, metric)})
    stat = group.stat(eval_name, metric)
    if stat is None:
        return {"value": None, "reason": first_reason or NO_VALUE, "ci": seeds[0]["ci"] if len(seeds) == 1 else None,
                "n": 0, "std": None, "min": None, "max": None, "seeds": seeds}
    return {"value": stat.mean, "reason": None, "ci": seeds[0]["ci"] if len(seeds) == 1 else None, "n": stat.n,
            "std": stat.std, "min": stat.low, "max": stat.high, "seeds": seeds}


def _gate(gate: Gate, seed: int | None, sae_id: str) -> dict[str, Any]:
    return {"metric": gate.metric, "eval": gate.eval_name, "seed": seed, "sae_id": sae_id, "gate": gate.describe(),
            "value": _number(gate.value), "passed": gate.passed, "reason": gate.reason,
            "allowed_to_fail": gate.allowed_to_fail}


def _settings(group: LayerGroup) -> dict[str, Any]:
    row = group.first
    if row.settings_key[0] == "imported":
        return {"source": row.settings_key[1], "arch": row.arch, "latents": row.latents, "label": row.label_text}
    hook, arch, k, latents, lr, batch, ctx, tokens, _seed, dataset = row.settings_key
    return {"hook": hook, "arch": arch, "k": k, "latents": latents, "lr": lr, "batch_size": batch, "ctx_len": ctx,
            "train_tokens": tokens, "train_dataset": dataset}


def _layer(report: Report, group: LayerGroup) -> dict[str, Any]:
    metrics = sorted({m for row in group.rows for cell in row.evals.values() for m in (*cell.values, *cell.notes)})
    return {
        "layer": group.layer, "hook": group.hook, "label": group.label(report.with_settings),
        "settings": _settings(group), "seeds": group.seeds, "sae_ids": group.sae_ids,
        "healthy": group.healthy, "gates_passed": len(group.passed_everywhere()),
        "gates_total": len(group.gate_metrics()), "healthy_seeds": group.healthy_seeds,
        "gates": [_gate(g, row.seed, row.sae_id) for row in group.rows for g in row.gates],
        "evals": {name: _eval(group, name, metrics) for name in group.eval_names()},
    }


def _eval(group: LayerGroup, eval_name: str, metrics: list[str]) -> dict[str, Any]:
    """Every metric (in `metrics`' order) with a value or a note on this eval in some seed."""
    cells = [(row.seed, row.sae_id, row.evals[eval_name]) for row in group.rows if eval_name in row.evals]
    stored = {m for _, _, cell in cells for m in (*cell.values, *cell.notes)}
    return {m: _metric(group, eval_name, m, cells) for m in metrics if m in stored}


def _model(report: Report, model: ModelReport) -> dict[str, Any]:
    picks = {}
    for which in RULES:
        group = model.pick(which)
        picks[which] = None if group is None else {"layer": group.layer, "label": group.label(report.with_settings),
                                                   "sae_ids": group.sae_ids, "rule": RULES[which]}
    return {
        "name": model.name, "model_id": model.model_id,
        "healthy_layers": model.healthy_count, "layers_total": len(model.layers),
        "layers": [_layer(report, g) for g in model.layers],
        "picks": picks,
        "jobs_without_results": [{"layer": layer, "reason": reason} for layer, reason in model.failed_jobs],
    }


def _delta(d: LayerDelta) -> dict[str, Any]:
    by_seed = d.seed_significance("loss_recovered")
    out: dict[str, Any] = {"layer": d.layer, "label": d.label, "eval": d.eval_name}
    for metric in ("loss_recovered", "dead_fraction", "l0", "explained_variance"):
        out[metric] = {"a": _number(d.a.get(metric)), "b": _number(d.b.get(metric)),
                       "delta": _number(d.delta(metric)),
                       "a_ci": _interval(d.a, metric), "b_ci": _interval(d.b, metric)}
    out["loss_recovered"]["significant"] = d.significant("loss_recovered")
    out["loss_recovered"]["significant_seeds"] = None if by_seed is None else {"apart": by_seed[0],
                                                                               "compared": by_seed[1]}
    return out


def _comparison(comparison: Comparison) -> dict[str, Any]:
    a, b = comparison.a, comparison.b

    def avg(model: ModelReport, metric: str) -> float | None:
        values = model.values(metric)
        return _number(exact_mean(values)) if values else None

    tests = [t for d in comparison.layers for t in d.tests("loss_recovered")]
    return {
        "a": a.name, "b": b.name, "significance_rule": SIGNIFICANCE,
        "healthy_layers": {"a": a.healthy_count, "b": b.healthy_count,
                           "a_total": len(a.layers), "b_total": len(b.layers)},
        "mean": {m: {"a": avg(a, m), "b": avg(b, m)}
                 for m in ("loss_recovered", "dead_fraction", "l0", "explained_variance")},
        "significant": {"apart": sum(tests), "tested": len(tests)},
        "summary": [{"label": s.label, "a": s.a, "b": s.b, "delta": s.delta, "verdict": s.verdict}
                    for s in comparison.summary],
        "layers": [_delta(d) for d in comparison.layers],
    }


def report_document(report: Report, comparison: Comparison | None) -> dict[str, Any]:
    last = report.runs[-1] if report.runs else None
    thresholds = {g.describe(): g for m in report.models.values() for r in m.rows for g in r.gates}
    provenance = report.provenance
    return {
        "format": "sae-bench report",
        "version": VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"db": report.db_path, "suites": report.suites, "runs": len(report.runs),
                   "last_run": last["run_id"] if last else None},
        "rules": {"health": HEALTH_RULE, "spread": SPREAD_RULE, "significance": SIGNIFICANCE},
        "seeded": report.seeded,
        "evals": report.eval_names,
        "gates": [{"gate": label, "metric": g.metric, "op": g.op, "min": g.low, "max": g.high}
                  for label, g in sorted(thresholds.items())],
        "provenance": None if provenance is None else {
            "last_run": None if provenance.run is None else {k: (str(v) if isinstance(v, datetime) else v)
                                                             for k, v in provenance.run.items()},
            "models": provenance.models, "evals": provenance.evals},
        "models": [_model(report, m) for m in report.models.values()],
        "comparison": None if comparison is None else _comparison(comparison),
    }


def to_json(report: Report, comparison: Comparison | None) -> str:
    return dumps(report_document(report, comparison))


_OPTIONS: dict[str, Any] = {"ensure_ascii": False, "allow_nan": False, "default": str}


def dumps(document: dict[str, Any]) -> str:
    """The document indented by two spaces down to each layer and each compared layer, which is
    one line. Why: with `indent` Python's json module encodes in pure Python (two thirds of a
    10,000-SAE report's time); without it, in C. So the bulk (layers) is encoded without indent and
    spliced into the indented rest; line-based tools get one layer per line."""
    nonce = uuid.uuid4().hex
    bulk: list[Any] = []

    def placeholder(item: Any) -> str:
        bulk.append(item)
        return f"\0{nonce}:{len(bulk) - 1}"

    skeleton = {**document, "models": [{**m, "layers": [placeholder(layer) for layer in m["layers"]]}
                                       for m in document["models"]]}
    if document.get("comparison") is not None:
        compared = document["comparison"]
        skeleton["comparison"] = {**compared, "layers": [placeholder(delta) for delta in compared["layers"]]}
    text = json.dumps(skeleton, indent=2, **_OPTIONS)
    mark = re.compile(r'"\\u0000' + nonce + r':(\d+)"')  # a NUL is always escaped: no user text can match
    return mark.sub(lambda found: json.dumps(bulk[int(found.group(1))], **_OPTIONS), text) + "\n"
