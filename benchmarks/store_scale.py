"""The read side at a lab's scale: how long a user waits on a 10,000-SAE results file.

    python benchmarks/store_scale.py                     # builds /tmp/sae-bench-synth.duckdb once
    python benchmarks/store_scale.py --db FILE           # an existing file (benchmarks/store_synth.py)

Times, as a user runs them (a fresh process each; wall and CPU seconds, medians of --repeat):
`report` (the terminal layout in a pipe, and `--format md|json|html`, and `--compare`), `gate`,
the pytest plugin's collection (`pytest --sae-bench FILE --collect-only -q`), and `sql` of the
ten worked queries of docs/schema.md (model names edited to the file's). Each worked query is
also timed inside one process (what DuckDB takes, without Python's start-up or printing). The
baseline is `sae-bench sql FILE "select 1"` in the same run: start-up plus opening the file, the
floor under every command, so each wall time is also given as a ratio to it. On a shared machine
the CPU seconds (user + system) are the steadier figure: close to the wall time of an idle one.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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


def timed(argv: list[str], repeat: int, cwd: Path | None = None) -> tuple[float, float]:
    """Median wall seconds of a fresh process, and its median CPU seconds (user + system: what
    it would take on an idle machine, nearly; the wall time also counts waiting for a CPU)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    seconds, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        code = done.returncode
        if code not in (0, 1):
            raise SystemExit(f"{' '.join(argv[:5])} failed ({code}): {done.stderr.strip()[-500:]}")
    return statistics.median(seconds), statistics.median(cpu)


def in_process(db: Path, sql: str, repeat: int) -> tuple[float, float]:
    from suite.store.readonly import run_query

    seconds, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run_query(db, sql, writer_busy=False)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(seconds), statistics.median(cpu)


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
    base, base_cpu = timed([*cli, "sql", str(args.db), "select 1"], args.repeat)
    print("| what | wall s | CPU s | wall x baseline | target (on CPU s) |")
    print("|---|---:|---:|---:|---|")

    def row(name: str, seconds: float, cpu: float, target: float | None) -> None:
        verdict = "" if target is None else f"< {target:g} s: {'met' if cpu < target else 'MISSED'}"
        print(f"| {name} | {seconds:.2f} | {cpu:.2f} | {seconds / base:.1f} | {verdict} |", flush=True)

    row('baseline: sql "select 1"', base, base_cpu, None)
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
        row(name, *timed(argv, args.repeat, cwd=out), TARGETS[target])
    for number, sql in enumerate(worked_queries(models), 1):
        row(f"sql worked query {number} (whole command)", *timed([*cli, "sql", str(args.db), sql], args.repeat), None)
        row(f"query {number} alone (in process)", *in_process(args.db, sql, args.repeat), TARGETS["query"])


if __name__ == "__main__":
    main()
