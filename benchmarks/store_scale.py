"""The read side at a lab's scale: how long a user waits on a 10,000-SAE results file.

    python benchmarks/store_scale.py                     # builds /tmp/sae-bench-synth.duckdb once
    python benchmarks/store_scale.py --db FILE           # an existing file (benchmarks/store_synth.py)

Times, as a user runs them (a fresh process each, wall seconds, median of --repeat):
`report` (the terminal layout in a pipe, and `--format md|json|html`, and `--compare`), `gate`,
the pytest plugin's collection (`pytest --sae-bench FILE --collect-only -q`), and `sql` of the
ten worked queries of docs/schema.md (model names edited to the file's). Each worked query is
also timed inside one process (what DuckDB takes, without Python's start-up). The baseline is
`sae-bench sql FILE "select 1"` in the same run: start-up plus opening the file, the floor under
every command, so each figure is also given as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"report": 5.0, "gate": 5.0, "query": 1.0, "collect": 10.0}


def worked_queries(models: list[str]) -> list[str]:
    doc = (ROOT / "docs" / "schema.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", doc, re.S)
    return [q.replace("'base'", f"'{models[0]}'").replace("'finetune'", f"'{models[1]}'") for q in queries]


def timed(argv: list[str], repeat: int, cwd: Path | None = None) -> tuple[float, int]:
    """Median wall seconds of a fresh process, and its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    seconds, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds.append(time.perf_counter() - start)
        code = done.returncode
        if code not in (0, 1):
            raise SystemExit(f"{' '.join(argv[:5])} failed ({code}): {done.stderr.strip()[-500:]}")
    return statistics.median(seconds), code


def in_process(db: Path, sql: str, repeat: int) -> float:
    from suite.store.readonly import run_query

    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_query(db, sql, writer_busy=False)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "sae-bench-synth.duckdb")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.db.exists():
        from benchmarks.store_synth import generate

        print(f"building {args.db}: {generate(args.db)}", flush=True)
    from suite.store import Store

    store = Store(args.db)
    counts = store.query("select (select count(*) from saes), (select count(*) from scores), "
                         "(select count(*) from metrics), (select count(*) from runs)")[0]
    models = [r[0] for r in store.query("select distinct model from saes order by 1")]
    print(f"{args.db}: {counts[0]:,} SAEs, {counts[1]:,} scores, {counts[2]:,} metric values, {counts[3]} runs; "
          f"machine: {os.cpu_count()} CPUs (shared: figures are wall time while others work)\n")
    cli = [sys.executable, "-m", "suite.cli"]
    out = Path(tempfile.mkdtemp(prefix="store-scale-"))
    base, _ = timed([*cli, "sql", str(args.db), "select 1"], args.repeat)
    rows: list[tuple[str, float, float | None]] = [("baseline: sql \"select 1\"", base, None)]
    commands = {
        "report (pipe)": ([*cli, "report", str(args.db)], "report"),
        "report --format md": ([*cli, "report", str(args.db), "--format", "md", "-o", str(out / "r.md")], "report"),
        "report --format json": ([*cli, "report", str(args.db), "--format", "json", "-o", str(out / "r.json")],
                                 "report"),
        "report --format html": ([*cli, "report", str(args.db), "--format", "html", "-o", str(out / "r.html")],
                                 "report"),
        f"report --compare {models[0]} {models[1]}": ([*cli, "report", str(args.db), "--compare", *models[:2]],
                                                      "report"),
        "gate": ([*cli, "gate", str(args.db)], "gate"),
        "pytest --sae-bench --collect-only": ([sys.executable, "-m", "pytest", "--sae-bench", str(args.db.absolute()),
                                               "--collect-only", "-q", "-p", "no:cacheprovider"], "collect"),
    }
    for name, (argv, target) in commands.items():
        seconds, _ = timed(argv, args.repeat, cwd=out)
        rows.append((name, seconds, TARGETS[target]))
    for number, sql in enumerate(worked_queries(models), 1):
        seconds, _ = timed([*cli, "sql", str(args.db), sql], args.repeat)
        rows.append((f"sql worked query {number}", seconds, None))
        rows.append((f"  query {number} in process", in_process(args.db, sql, args.repeat), TARGETS["query"]))
    print("| what | seconds | x baseline | target |")
    print("|---|---:|---:|---:|")
    for name, seconds, target in rows:
        verdict = "" if target is None else f"< {target:g} s {'met' if seconds < target else 'MISSED'}"
        print(f"| {name} | {seconds:.2f} | {seconds / base:.1f} | {verdict} |")


if __name__ == "__main__":
    main()
