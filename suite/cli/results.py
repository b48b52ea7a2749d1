"""Commands that read a results file: report, gate, sql, export, tui; and migrate, its one writer."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from suite.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, existing_db, print_error, readable_db
from suite.fit import Col, fit_table, plain_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-model layer tables and a model-vs-model comparison")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare model B against model A")
    p.add_argument("--format", choices=["rich", "md", "markdown", "html", "json"], default="rich",
                   help="rich: the terminal; md (or markdown); html: one self-contained page with charts; "
                        "json: the shape in docs/report.md")
    p.add_argument("-o", "--output", help="write to this file instead of the terminal")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("gate", help="stored health verdicts; exit 1 if any gate failed")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("--all", action="store_true", help="list passing gates too")
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("sql", help="run a read-only SQL query over a results file")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("query", help='e.g. "select * from health"')
    p.add_argument("--format", choices=["table", "plain", "csv", "json"],
                   help="table: fitted to the terminal; plain: aligned columns, no frame, every value whole (records "
                        "when too wide); default: table on a terminal, plain in a pipe")
    p.set_defaults(func=cmd_sql)
    p = sub.add_parser("export", help="write the tables as Parquet, or the SAEs as SAELens or sparsify directories")
    p.add_argument("db", help="results DuckDB file")
    p.add_argument("out", nargs="?", metavar="OUT_DIR", help="output directory")
    p.add_argument("--format", choices=["parquet", "saelens", "sparsify"], default="parquet",
                   help="parquet: every table and view; saelens: a folder per SAE (SAE.load_from_disk); sparsify: a "
                        "run folder per model and SAE settings with a folder per hook point (SparseCoder.load_many)")
    p.add_argument("--sae", action="append", metavar="ID", help="only this SAE (id or unique prefix; repeatable)")
    p.add_argument("--model", action="append", metavar="ALIAS", help="only SAEs of this model alias (repeatable)")
    p.add_argument("--parquet", metavar="DIR", help="same as OUT_DIR with --format parquet (earlier syntax)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("migrate", help="bring a results file from an earlier sae-bench to this version's schema")
    p.add_argument("db", help="results DuckDB file (a backup copy is kept beside it)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("tui", help="browse runs, layers, SAEs and comparisons in the terminal")
    p.add_argument("db", nargs="?", help="results DuckDB file (default: the one under results/, or pick)")
    p.set_defaults(func=cmd_tui)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from suite.report import compare, load_report
    from suite.report_format import render, report_blocks, to_console
    from suite.store import Store

    to_stdout = args.format != "rich" and not args.output
    db = readable_db(args.db, console, Console(stderr=True, emoji=False) if to_stdout else None)
    if db is None:
        return EXIT_BAD_INPUT
    if args.output and Path(args.output).resolve() == db.resolve():
        print_error(console, f"-o {args.output}: that is the results file itself; choose another output file")
        return EXIT_BAD_INPUT
    if args.compare and args.compare[0] == args.compare[1]:
        print_error(console, f"--compare {args.compare[0]} {args.compare[1]}: name two different models (A, then B)")
        return EXIT_BAD_INPUT
    report = load_report(Store(db))
    comparison = None
    if args.compare:
        try:
            comparison = compare(report, *args.compare)
        except KeyError as exc:
            print_error(console, f"--compare: {exc.args[0]}")
            return EXIT_BAD_INPUT
    if args.format == "rich" and not args.output:
        to_console(report_blocks(report, comparison), console)
        return 0
    text = render("md" if args.format == "rich" else args.format, report, comparison, Store(db))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        console.print(f"wrote {escape(args.output)}", highlight=False, soft_wrap=True)
    else:
        sys.stdout.write(text)
    return 0


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from suite.gates import FAIL, PASS, SKIP, XFAIL, layer_verdicts, load_checks

    db = readable_db(args.db, console)
    if db is None:
        return EXIT_BAD_INPUT
    checks = load_checks(db)
    style = {PASS: "green", FAIL: "red", XFAIL: "yellow", SKIP: "dim"}
    rows = [[check.name, Text(check.outcome, style=style[check.outcome]), check.message]
            for check in checks if args.all or check.outcome != PASS]
    console.print(fit_table([Col("gate", whole=True), Col("verdict", whole=True), Col("detail")], rows,
                            console.width, title=f"health gates in {db}"))
    counts = {o: sum(c.outcome == o for c in checks) for o in (PASS, FAIL, XFAIL, SKIP)}
    console.print(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[XFAIL]} allowed to fail, "
                  f"{counts[SKIP]} not applicable")
    console.print(layer_verdicts(db).line(), highlight=False)
    return EXIT_FAILED if counts[FAIL] else 0


def cmd_sql(args: argparse.Namespace, console: Console) -> int:
    from suite.report import sql_cell
    from suite.store.readonly import QueryRefused, run_query

    db = existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_INPUT
    try:
        result = run_query(db, args.query)
    except QueryRefused as exc:
        print_error(console, f"sql: {exc}")
        return EXIT_BAD_INPUT
    names, rows = result.names, result.rows
    fmt = args.format or ("table" if console.is_terminal else "plain")
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        sys.stdout.write(json.dumps([dict(zip(names, r)) for r in rows], default=str, indent=2) + "\n")
    else:
        cols = [Col(name, whole=_whole_sql_column(name)) for name in names]
        cells = [[sql_cell(v) for v in row] for row in rows]
        layout = fit_table if fmt == "table" else plain_table
        console.print(layout(cols, cells, console.width))
        snapshot = " (read from a snapshot: a run is writing the file)" if result.snapshot else ""
        console.print(f"[dim]{len(rows)} row(s){snapshot}[/dim]")
    return 0


def _whole_sql_column(name: str) -> bool:
    """Ids, models and statuses are never wrapped in `sql --format table`; other values may be."""
    return name.endswith("id") or name in ("model", "status", "eval_name", "metric", "suite", "hook", "layer")


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    db = existing_db(args.db, console)
    if db is None:
        return EXIT_BAD_INPUT
    if args.parquet and (args.out or args.format != "parquet"):
        print_error(console, "--parquet DIR is the earlier spelling of `export DB DIR`; give one of them")
        return EXIT_BAD_INPUT
    out = args.out or args.parquet
    if not out:
        print_error(console, "give the output directory: sae-bench export DB OUT_DIR [--format parquet|saelens|sparsify]")
        return EXIT_BAD_INPUT
    if args.format == "parquet":
        if args.sae or args.model:
            print_error(console, "--sae and --model select SAEs to export with --format saelens or sparsify")
            return EXIT_BAD_INPUT
        return _export_parquet(db, Path(out), console)
    return _export_saes(db, Path(out), args, console)


def _export_parquet(db: Path, out: Path, console: Console) -> int:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db.absolute()), read_only=True,
                        config={"autoload_known_extensions": False, "autoinstall_known_extensions": False}) as con:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' order by 1").fetchall()]
        for name in names:
            target = out / f"{name}.parquet"
            con.execute(f"copy (select * from \"{name}\") to '{target.as_posix()}' (format parquet)")
    console.print(f"wrote {len(names)} table(s) and view(s) to {escape(str(out))}: {', '.join(names)}",
                  highlight=False, soft_wrap=True)
    return 0


def _export_saes(db: Path, out: Path, args: argparse.Namespace, console: Console) -> int:
    from suite.export import ExportError, export

    try:
        written, failed = export(db, out, args.format, args.sae, args.model)
    except ExportError as exc:
        print_error(console, str(exc))
        return EXIT_BAD_INPUT
    cols = [Col("sae_id", whole=True), Col("model", whole=True), Col("layer", whole=True, justify="right"),
            Col("hook", whole=True), Col("directory")]
    rows = [[stored.sae_id, stored.model, str(stored.layer), stored.hook, str(path.relative_to(out))]
            for stored, path in written]
    console.print(fit_table(cols, rows, console.width,
                            title=f"{len(written)} SAE(s) written as {args.format} to {out}"))
    for stored, reason in failed:
        print_error(console, f"{stored.sae_id}: {reason}")
    return EXIT_FAILED if failed else 0


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    from suite.store import SCHEMA_VERSION, Store, StoreError
    from suite.store.lock import WriterLock
    from suite.store.migrate import migrate, what_is_kept

    store = Store(Path(args.db))
    if not store.path.is_file():
        print_error(console, f"no results database at {store.path}")
        return EXIT_BAD_INPUT
    try:
        found = store.schema_version()
        if found == SCHEMA_VERSION:
            console.print(f"{escape(str(store.path))} already has results schema version {SCHEMA_VERSION}",
                          highlight=False, soft_wrap=True)
            return 0
        with WriterLock(store.path, "migrate"):
            backup = migrate(store)
            store.init()
    except StoreError as exc:
        print_error(console, str(exc))
        return EXIT_BAD_INPUT
    console.print(f"migrated {escape(str(store.path))} from schema {found} to {SCHEMA_VERSION} (backup: "
                  f"{escape(backup)}). {escape(what_is_kept(found))}", highlight=False, soft_wrap=True)
    return 0


def cmd_tui(args: argparse.Namespace, console: Console) -> int:
    """A file named on the command line is checked before the app starts: one line and exit 2
    for a file that is not a readable sae-bench results file."""
    if args.db is not None and readable_db(args.db, console) is None:
        return EXIT_BAD_INPUT
    from tui.app import run_tui

    return run_tui(args.db)
