"""The `sae-bench` command line: validate, plan and run specs; report, gate, query and export results.

Exit codes: 0 success, 1 some job or gate failed, 2 invalid spec or arguments, 130 stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from suite.grid import groups
from suite.spec import Spec, SpecError, load_spec

EXIT_JOB_FAILED = 1
EXIT_BAD_SPEC = 2
EXIT_INTERRUPTED = 130


def _print_spec_errors(exc: SpecError, console: Console) -> None:
    for problem in exc.problems:
        console.print(f"[red]error[/red] {exc.path}: {problem}", highlight=False, soft_wrap=True)


def _load_validated(path: str, console: Console) -> tuple[Spec, list] | None:
    from suite.runner import validated_jobs

    try:
        spec = load_spec(path)
        return spec, validated_jobs(spec)
    except SpecError as exc:
        _print_spec_errors(exc, console)
        return None


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    loaded = _load_validated(args.spec, console)
    if loaded is None:
        return EXIT_BAD_SPEC
    spec, jobs = loaded
    console.print(f"[green]ok[/green] {spec.path}: suite {spec.name!r}, {len(jobs)} job(s)")
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    loaded = _load_validated(args.spec, console)
    if loaded is None:
        return EXIT_BAD_SPEC
    spec, jobs = loaded
    table = Table(title=f"{spec.name}: {len(jobs)} job(s) -> {spec.db_path(args.db)}", title_justify="left")
    for name in ("job", "model", "model id", "layer", "arch", "k", "latents", "lr", "batch", "ctx",
                 "train tokens", "train dataset"):
        table.add_column(name, justify="right" if name in ("layer", "k", "latents", "batch", "ctx",
                                                           "train tokens") else "left")
    for job in jobs:
        t, s = job.train, job.sae
        table.add_row(job.job_id, job.model.name, job.model.id, str(job.layer), s.arch, str(s.k),
                      str(s.latents), f"{t.lr:g}", str(t.batch_size), str(t.ctx_len), f"{t.tokens:,}",
                      t.dataset.label())
    console.print(table)
    grouped = groups(jobs)
    model_tokens = sum(train.tokens for _, train in grouped)
    eval_tokens = sum(e.tokens for e in jobs[0].evals)
    console.print(
        f"Token budget: {len(grouped)} training stream(s) (jobs sharing a model and stream train from one "
        f"forward pass), {model_tokens:,} training tokens through the models in all, "
        f"{sum(j.train.tokens for j in jobs):,} SAE training tokens; "
        f"evaluation {eval_tokens:,} tokens per stream over {len(jobs[0].evals)} dataset(s) "
        f"({', '.join(e.name for e in jobs[0].evals)})."
    )
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from suite.runner import run_spec
    from suite.store import Store, StoreError
    from suite.tables import model_tables

    try:
        spec = load_spec(args.spec)
        outcome = run_spec(spec, args.db, args.device, console)
    except SpecError as exc:
        _print_spec_errors(exc, console)
        return EXIT_BAD_SPEC
    except StoreError as exc:
        console.print(f"[red]error[/red] {exc}", highlight=False)
        return EXIT_BAD_SPEC
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished jobs are stored; run again to resume")
        return EXIT_INTERRUPTED
    for table in model_tables(Store(outcome.db_path), outcome.job_ids):
        console.print(table)
    console.print(
        f"run {outcome.run_id}: {outcome.finished} trained, {outcome.skipped} skipped (already done), "
        f"{outcome.failed} failed -> {outcome.db_path}"
    )
    return EXIT_JOB_FAILED if outcome.failed else 0


def _existing_db(path: str, console: Console) -> Path | None:
    from suite.store import Store, StoreError

    db = Path(path)
    try:
        Store(db).check_schema()
    except StoreError as exc:
        hint = " (run `sae-bench run SPEC` first)" if not db.is_file() else ""
        console.print(f"[red]error[/red] {exc}{hint}", highlight=False)
        return None
    return db


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from suite.report import compare, load_report
    from suite.report_format import report_blocks, to_console, to_html, to_markdown
    from suite.store import Store

    db = _existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_SPEC
    report = load_report(Store(db))
    comparison = None
    if args.compare:
        try:
            comparison = compare(report, *args.compare)
        except KeyError as exc:
            console.print(f"[red]error[/red] --compare: {exc.args[0]}")
            return EXIT_BAD_SPEC
    blocks = report_blocks(report, comparison)
    if args.format == "rich" and not args.output:
        to_console(blocks, console)
        return 0
    text = to_html(blocks) if args.format == "html" else to_markdown(blocks)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        console.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from suite.gates import FAIL, PASS, SKIP, XFAIL, load_checks

    db = _existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_SPEC
    checks = load_checks(db)
    style = {PASS: "green", FAIL: "red", XFAIL: "yellow", SKIP: "dim"}
    table = Table(title=f"health gates in {db}", title_justify="left")
    for name in ("gate", "verdict", "detail"):
        table.add_column(name, overflow="fold")
    for check in checks:
        if args.all or check.outcome != PASS:
            table.add_row(check.name, f"[{style[check.outcome]}]{check.outcome}[/]", check.message)
    console.print(table)
    counts = {o: sum(c.outcome == o for c in checks) for o in (PASS, FAIL, XFAIL, SKIP)}
    console.print(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[XFAIL]} allowed to fail, "
                  f"{counts[SKIP]} not applicable")
    return EXIT_JOB_FAILED if counts[FAIL] else 0


def cmd_sql(args: argparse.Namespace, console: Console) -> int:
    import duckdb

    from suite.report import sql_cell

    db = _existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_SPEC
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            cursor = con.execute(args.query)
            names = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall() if names else []
    except duckdb.Error as exc:
        console.print(f"[red]error[/red] {type(exc).__name__}: {exc}", highlight=False)
        return EXIT_BAD_SPEC
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif args.format == "json":
        sys.stdout.write(json.dumps([dict(zip(names, r)) for r in rows], default=str, indent=2) + "\n")
    else:
        table = Table()
        for name in names:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(sql_cell(v) for v in row))
        console.print(table)
        console.print(f"[dim]{len(rows)} row(s)[/dim]")
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    import duckdb

    db = _existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_SPEC
    out = Path(args.parquet)
    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' order by 1").fetchall()]
        for name in names:
            target = out / f"{name}.parquet"
            con.execute(f"copy (select * from \"{name}\") to '{target.as_posix()}' (format parquet)")
    console.print(f"wrote {len(names)} table(s) and view(s) to {out}: {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("validate", "check a spec; runs nothing"),
                           ("plan", "print the job grid and token budget; runs nothing"),
                           ("run", "train and score the grid, store results, print tables")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("spec", help="path to a spec TOML file, e.g. specs/demo.toml")
        if name != "validate":
            p.add_argument("--db", help="results DuckDB file (default: the spec's [suite].db)")
        if name == "run":
            p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                           help="override the spec's [suite].device")
    p = sub.add_parser("report", help="per-model layer tables and a model-vs-model comparison")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare model B against model A")
    p.add_argument("--format", choices=["rich", "markdown", "html"], default="rich")
    p.add_argument("-o", "--output", help="write to this file instead of the terminal")
    p = sub.add_parser("gate", help="stored health verdicts; exit 1 if any gate failed")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("--all", action="store_true", help="list passing gates too")
    p = sub.add_parser("sql", help="run a read-only SQL query over a results file")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("query", help='e.g. "select * from health"')
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p = sub.add_parser("tui", help="browse runs, layers, jobs and comparisons in the terminal")
    p.add_argument("db", nargs="?", help="results DuckDB file (default: the one under results/, or pick)")
    p = sub.add_parser("export", help="write every table and view to Parquet")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("--parquet", required=True, metavar="DIR", help="output directory")
    return parser


def cmd_tui(args: argparse.Namespace, console: Console) -> int:
    from tui.app import run_tui

    return run_tui(args.db)


COMMANDS = {"tui": cmd_tui, "validate": cmd_validate, "plan": cmd_plan, "run": cmd_run, "report": cmd_report,
            "gate": cmd_gate, "sql": cmd_sql, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    return COMMANDS[args.command](args, console)


if __name__ == "__main__":
    sys.exit(main())
