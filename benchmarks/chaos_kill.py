"""Chaos check (not a test): SIGKILL a run at N random moments, resume each time, and compare the
final results file with an uninterrupted run of the same spec.

Equal means: the same SAEs done (by key), the same current scores (by key), every stored metric
and gate verdict the same, every checkpoint's weights hash the same; and after the last resume no
run or SAE is left `running`/`pending` (killed runs read `interrupted`) and no temporary
checkpoint directory is left behind. Usage:
    python benchmarks/chaos_kill.py [--spec specs/demo.toml] [--kills 10] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def spec_for(source: Path, db: Path) -> Path:
    text = source.read_text()
    text, count = re.subn(r'(?m)^db\s*=.*$', f'db = "{db.as_posix()}"', text, count=1)
    if not count:
        text = text.replace("[suite]", f'[suite]\ndb = "{db.as_posix()}"', 1)
    path = db.with_suffix(".toml")
    path.write_text(text)
    return path


def run(spec: Path) -> tuple[int, float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "suite.cli", "run", str(spec)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "120"})
    return done.returncode, time.monotonic() - start, done.stdout + done.stderr


def kill_after(spec: Path, delay: float) -> str:
    """Start a run, SIGKILL it after `delay` seconds; what it had done by then."""
    process = subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(spec)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return f"finished before the kill (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return "killed"


def snapshot(db: Path) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        def q(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        return {
            "saes": {k: (s, w) for k, s, w in q("select sae_key, status, weights_sha256 from saes")},
            "scores": {k for (k,) in q("select score_key from scores where score_id in (select score_id from current_scores)")},
            "metrics": {(a, e, m): v for a, e, m, v in q(
                "select a.sae_key, c.eval_name, m.metric, m.value from metrics m join current_scores c using (score_id) "
                "join saes a using (sae_id)")},
            "gates": {(a, e, g): p for a, e, g, p in q(
                "select a.sae_key, c.eval_name, g.metric, g.passed from gates g join current_scores c using (score_id) "
                "join saes a using (sae_id)")},
            "runs": [s for (s,) in q("select status from runs order by started_at")],
            "progress": q("select count(*) filter (where status = 'done'), count(*) from saes"),
        }


def _progress(db: Path) -> int:
    """SAEs done plus current scores: the units of work a run leaves behind."""
    state = snapshot(db)
    return state["progress"][0][0] + len(state["scores"])


def same_value(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/demo.toml")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sae-bench-chaos-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    reference_spec = spec_for(ROOT / args.spec, work / "reference.duckdb")
    code, seconds, out = run(reference_spec)
    if code not in (0, 1):
        sys.exit(f"the uninterrupted run failed (exit {code}):\n{out}")
    print(f"uninterrupted run: exit {code}, {seconds:.0f} s", flush=True)
    _, idle, _ = run(reference_spec)  # everything done: the cost of starting, planning and printing
    work_total = _progress(work / "reference.duckdb")
    print(f"re-run with nothing to do: {idle:.0f} s", flush=True)

    chaos_db = work / "chaos.duckdb"
    chaos_spec = spec_for(ROOT / args.spec, chaos_db)
    landed = []
    for i in range(args.kills):
        # a moment within what is left to do: the start-up cost plus the reference's remaining share
        progress = _progress(chaos_db) / work_total if chaos_db.exists() else 0.0
        delay = rng.uniform(1.0, idle + (seconds - idle) * (1.0 - progress))
        what = kill_after(chaos_spec, delay)
        state = snapshot(chaos_db)["progress"][0] if chaos_db.exists() else (0, 0)
        landed.append({"kill": i + 1, "after_s": round(delay, 1), "outcome": what, "saes_done_of": list(state)})
        print(f"kill {i + 1}/{args.kills} after {delay:.1f} s: {what}; SAEs done {state[0]}/{state[1]}", flush=True)
    final_code, final_seconds, final_out = run(chaos_spec)
    print(f"final resume: exit {final_code}, {final_seconds:.0f} s", flush=True)

    ref, got = snapshot(work / "reference.duckdb"), snapshot(chaos_db)
    checkpoints = chaos_db.with_name(chaos_db.stem + "-checkpoints")
    leftovers = sorted(p.name for p in checkpoints.glob(".ckpt-*"))
    metric_diffs = [k for k in ref["metrics"] if k not in got["metrics"]
                    or not same_value(ref["metrics"][k], got["metrics"][k])]
    result = {
        "kills": args.kills,
        "killed_mid_run": sum(x["outcome"] == "killed" for x in landed),
        "final_exit": final_code,
        "reference_exit": code,
        "same_saes_done": {k for k, (s, _) in ref["saes"].items() if s == "done"}
        == {k for k, (s, _) in got["saes"].items() if s == "done"},
        "same_weights": {k: w for k, (_, w) in ref["saes"].items()} == {k: w for k, (_, w) in got["saes"].items()},
        "same_scores": ref["scores"] == got["scores"],
        "metrics_compared": len(ref["metrics"]),
        "metrics_different": len(metric_diffs),
        "same_gates": ref["gates"] == got["gates"],
        "sae_statuses": sorted({s for s, _ in got["saes"].values()}),
        "run_statuses": got["runs"],
        "temp_checkpoints_left": leftovers,
        "landed": landed,
    }
    result["ok"] = (result["same_saes_done"] and result["same_weights"] and result["same_scores"]
                    and not metric_diffs and result["same_gates"] and final_code == code
                    and not {"running", "pending"} & set(result["sae_statuses"])
                    and "running" not in got["runs"] and not leftovers)
    print(json.dumps(result, indent=2, default=str))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
