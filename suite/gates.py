"""Stored gate verdicts as named checks: one per (job, eval, gate), plus one per job without
results. `sae-bench gate` and the pytest plugin both read them from here, so they agree."""

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


@dataclass(frozen=True)
class GateCheck:
    name: str  # suite::model::layerN::eval::gate
    outcome: str  # pass | fail | xfail | skip
    message: str
    job_id: str


def load_checks(db_path: str | Path) -> list[GateCheck]:
    store = Store(Path(db_path))
    store.check_schema()
    jobs = store.query_dicts("select job_id, suite, model, model_id, layer, arch, k, latents, lr, status, error "
                             "from jobs order by suite, model, layer, k, latents, lr, job_id")
    base = {j["job_id"]: f"{j['suite']}::{j['model']}::layer{j['layer']}" for j in jobs}
    repeats = Counter(base.values())
    prefix = {job_id: name + (f"::{job_id}" if repeats[name] > 1 else "") for job_id, name in base.items()}
    gates = store.query_dicts("select * from gates order by eval_name, metric")
    checks = []
    for job in jobs:
        if job["status"] != "done":
            error = (job["error"] or "").splitlines()[0] if job["error"] else "no error recorded"
            checks.append(GateCheck(f"{prefix[job['job_id']]}::job", FAIL,
                                    f"job {job['job_id']} is {job['status']}: {error}", job["job_id"]))
    for g in gates:
        if g["job_id"] not in prefix:
            continue
        label = gate_label(g["metric"], g["op"], g["threshold_min"], g["threshold_max"])
        name = f"{prefix[g['job_id']]}::{g['eval_name']}::{label}"
        if g["passed"] is None:
            checks.append(GateCheck(name, SKIP, f"not applicable: {g['reason']}", g["job_id"]))
            continue
        verdict = f"{g['metric']} = {g['value']:.4g}, gate {label}"
        if g["passed"]:
            checks.append(GateCheck(name, PASS, verdict, g["job_id"]))
        elif g["allowed_to_fail"]:
            checks.append(GateCheck(name, XFAIL, f"{verdict} failed (allowed to fail by the spec)", g["job_id"]))
        else:
            checks.append(GateCheck(name, FAIL, f"{verdict} failed (job {g['job_id']})", g["job_id"]))
    return checks
