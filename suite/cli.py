"""The `sae-bench` command line: validate, plan and run specs.

Exit codes: 0 success, 1 some job failed, 2 the spec (or its arguments) is invalid, 130 stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from suite.grid import groups
from suite.spec import Spec, SpecError, load_spec

EXIT_JOB_FAILED = 1
EXIT_BAD_SPEC = 2
EXIT_INTERRUPTED = 130


def _load_validated(path: str, console: Console) -> tuple[Spec, list] | None:
    from suite.runner import validated_jobs

    try:
        spec = load_spec(path)
        return spec, validated_jobs(spec)
    except SpecError as exc:
        for problem in exc.problems:
            console.print(f"[red]error[/red] {exc.path}: {problem}", highlight=False, soft_wrap=True)
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
    from suite.store import Store
    from suite.tables import model_tables

    try:
        spec = load_spec(args.spec)
        outcome = run_spec(spec, args.db, args.device, console)
    except SpecError as exc:
        for problem in exc.problems:
            console.print(f"[red]error[/red] {exc.path}: {problem}", highlight=False, soft_wrap=True)
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
    return parser


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "run": cmd_run}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    return COMMANDS[args.command](args, console)


if __name__ == "__main__":
    sys.exit(main())
