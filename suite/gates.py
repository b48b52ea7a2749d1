"""Stored gate verdicts as named checks: one per (SAE, eval, gate), plus one per SAE or score
without results. `sae-bench gate` and the pytest plugin both read them from here, so they agree."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from suite.store import Store

PASS, FAIL, XFAIL, SKIP = "pass", "fail", "xfail", "skip"


def _bound(value: float) -> str:
    text = f"{value:g}"
    if "." in text and len(text.split(".")[1]) == 1:
        text += "0"  # 0.6 -> 0.60, as thresholds are usually written
    return text


def gate_label(metric: str, op: str, low: float | None, high: float | None) -> str:
    if op == "between":
        return f"{_bound(low)}<={metric}<={_bound(high)}"
    return f"{metric}{op}{_bound(low if op == '>=' else high)}"


def _suffix(sae: dict, same_name: int, same_settings: int) -> str:
    """What tells SAEs of one layer apart in a check's name: the seed when only the seed differs."""
    if same_name == 1:
        return ""
    if same_name == same_settings and sae["seed"] is not None:
        return f"::seed{sae['seed']}"
    return f"::{sae['sae_id']}"


@dataclass(frozen=True)
class LayerVerdicts:
    """`n/N layers healthy` with seeds aggregated (`suite.seeds.HEALTH_RULE`), for the gate summary."""

    healthy: int
    total: int
    seeded: bool
    rule: str

    def line(self) -> str:
        seeds = ", seeds aggregated" if self.seeded else ""
        return f"{self.healthy}/{self.total} layers healthy ({self.rule}{seeds})"


def layer_verdicts(db_path: str | Path) -> LayerVerdicts:
    """The report's layer counts (`ModelReport.healthy_count`, `Report.seeded`) without building the
    report: a layer is its seed group (`suite.seeds.group_seeds`' key), and it is healthy exactly when
    none of its SAEs' current gates failed (every applicable gate passes; n/a gates count for neither)."""
    from suite.report import SETTINGS_COLUMNS, settings_key
    from suite.seeds import HEALTH_RULE_SHORT, without_seed

    store = Store(Path(db_path))
    store.check_schema()
    with store.snapshot():
        saes = store.query_dicts(
            f"select model, layer, {', '.join(SETTINGS_COLUMNS)}, exists (select 1 from gates g join current_scores c "
            "using (score_id) where c.sae_id = s.sae_id and g.passed = false) as failed "
            "from saes s where status = 'done'")
    layers: dict[tuple, list[bool]] = {}
    for sae in saes:
        key = (sae["model"], sae["layer"], sae["hook"], without_seed(settings_key(sae)))
        layers.setdefault(key, []).append(sae["failed"])
    return LayerVerdicts(sum(not any(failed) for failed in layers.values()), len(layers),
                         any(len(failed) > 1 for failed in layers.values()), HEALTH_RULE_SHORT)


@dataclass(frozen=True)
class GateCheck:
    name: str  # suite::model::layerN[::hook][::sae_id]::eval::metric (sae_id where a layer has several SAEs)
    outcome: str  # pass | fail | xfail | skip
    message: str
    sae_id: str


def load_checks(db_path: str | Path) -> list[GateCheck]:
    store = Store(Path(db_path))
    store.check_schema()
    with store.snapshot():  # every query below sees one state of the file, even while a run writes
        return _load_checks(store)


def _load_checks(store: Store) -> list[GateCheck]:
    saes = store.query_dicts("select sae_id, suite, model, layer, hook, status, error, seed, "
                             "json_remove(settings, '$.train.seed') as unseeded from saes "
                             "order by suite, model, layer, hook, k, latents, lr, seed, sae_id")
    hook = {s["sae_id"]: "" if s["hook"] == "resid_post" else f"::{s['hook']}" for s in saes}
    base = {s["sae_id"]: f"{s['suite']}::{s['model']}::layer{s['layer']}{hook[s['sae_id']]}" for s in saes}
    repeats = Counter(base.values())
    settings = Counter((base[s["sae_id"]], s["unseeded"]) for s in saes)
    prefix = {s["sae_id"]: base[s["sae_id"]] + _suffix(s, repeats[base[s["sae_id"]]],
                                                       settings[(base[s["sae_id"]], s["unseeded"])]) for s in saes}
    gates = store.query_dicts("select g.*, c.sae_id, c.eval_name from gates g join current_scores c using (score_id) "
                              "order by c.eval_name, g.metric")
    failed_scores = store.query_dicts(
        "select s.sae_id, s.eval_name, s.error from scores s where s.status = 'failed' and not exists "
        "(select 1 from current_scores c where c.sae_id = s.sae_id and c.eval_name = s.eval_name) order by 1, 2")
    checks = []
    for sae in saes:
        if sae["status"] != "done":
            error = (sae["error"] or "").splitlines()[0] if sae["error"] else "no error recorded"
            checks.append(GateCheck(f"{prefix[sae['sae_id']]}::sae", FAIL,
                                    f"SAE {sae['sae_id']} is {sae['status']}: {error}", sae["sae_id"]))
    for failed in failed_scores:
        if failed["sae_id"] in prefix:
            error = (failed["error"] or "").splitlines()[0] if failed["error"] else "no error recorded"
            checks.append(GateCheck(f"{prefix[failed['sae_id']]}::{failed['eval_name']}::score", FAIL,
                                    f"SAE {failed['sae_id']} was not scored on {failed['eval_name']}: {error}",
                                    failed["sae_id"]))
    for g in gates:
        if g["sae_id"] not in prefix:
            continue
        label = gate_label(g["metric"], g["op"], g["threshold_min"], g["threshold_max"])
        name = f"{prefix[g['sae_id']]}::{g['eval_name']}::{g['metric']}"  # the threshold is in the message
        if g["passed"] is None:
            checks.append(GateCheck(name, SKIP, f"{label} not applicable: {g['reason']}", g["sae_id"]))
            continue
        verdict = f"{g['metric']} = {g['value']:.4g}, gate {label}"
        if g["passed"]:
            checks.append(GateCheck(name, PASS, verdict, g["sae_id"]))
        elif g["allowed_to_fail"]:
            checks.append(GateCheck(name, XFAIL, f"{verdict} failed (allowed to fail by the spec)", g["sae_id"]))
        else:
            checks.append(GateCheck(name, FAIL, f"{verdict} failed (SAE {g['sae_id']})", g["sae_id"]))
    order = {sae["sae_id"]: index for index, sae in enumerate(saes)}
    return sorted(checks, key=lambda check: (order.get(check.sae_id, len(order)), check.name))
