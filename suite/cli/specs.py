"""Commands that read a spec: validate, plan, run."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from suite.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    print_error,
    print_spec_errors,
    sigterm_as_interrupt,
)
from suite.spec import Spec, SpecError, load_spec
from suite.wandb_mirror import project_name


PLAN_ROWS = 200  # a grid may hold 100k SAEs: the table shows this many unless --all


def register(sub: argparse._SubParsersAction) -> None:
    for name, helptext, func in (("validate", "check a spec; runs nothing", cmd_validate),
                                 ("plan", "what a run would train and score; runs nothing", cmd_plan),
                                 ("run", "train and score what the results file lacks, store it, print tables",
                                  cmd_run)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("spec", help="path to a spec TOML file, e.g. specs/demo.toml")
        if name != "validate":
            p.add_argument("--db", help="results DuckDB file (default: the spec's [suite].db)")
        if name == "plan":
            p.add_argument("--all", action="store_true",
                           help=f"list every SAE (by default the first {PLAN_ROWS} rows, then the totals)")
        if name == "run":
            p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                           help="override the spec's [suite].device")
            p.add_argument("--executor", choices=["local", "ray"],
                           help="where model groups run (default: the spec's [suite].executor, else local)")
            p.add_argument("--address", help="Ray cluster to use with --executor ray, e.g. auto or HOST:PORT "
                                             "(default: RAY_ADDRESS, else a local Ray instance)")
            p.add_argument("--threads", type=_positive, metavar="N",
                           help="torch threads of this process (default: cores - 1, at least 1; "
                                "see docs/performance.md); with --executor ray use --cpus-per-group")
            p.add_argument("--cpus-per-group", type=_positive, metavar="N",
                           help="with --executor ray: CPUs each model group's task holds, and its torch threads "
                                "(default 1)")
            p.add_argument("--wandb", metavar="PROJECT", type=project_name,
                           help="mirror each SAE to this Weights & Biases project (default: [suite].wandb)")
        p.set_defaults(func=func)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _declared(path: str, console: Console):
    from suite.plan import declared_saes

    try:
        spec = load_spec(path)
        return spec, declared_saes(spec)
    except SpecError as exc:
        print_spec_errors(exc, console)
        return None


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    loaded = _declared(args.spec, console)
    if loaded is None:
        return EXIT_BAD_INPUT
    spec, declared = loaded
    console.print(f"[green]ok[/green] {escape(str(spec.path))}: suite {spec.name!r}, {len(declared)} SAE(s)",
                  highlight=False, soft_wrap=True)
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from suite.budgets import eval_budgets
    from suite.cli.plan_view import print_budgets, print_plan
    from suite.grid import score_tasks
    from suite.plan import plan
    from suite.store import Store, StoreError

    loaded = _declared(args.spec, console)
    if loaded is None:
        return EXIT_BAD_INPUT
    spec, declared = loaded
    db = spec.db_path(args.db)
    store = Store(db) if db.is_file() else None
    try:
        if store is not None:
            store.check_schema()
        planned = plan(spec, declared, store)
    except StoreError as exc:
        print_error(console, str(exc))
        return EXIT_BAD_INPUT
    tasks = score_tasks(spec)
    shown = planned if args.all else planned[:PLAN_ROWS]
    console.print(Text(f"{spec.name}: {len(planned)} SAE(s) -> {db}", style="bold"), highlight=False)
    print_plan(console, shown)
    if len(shown) < len(planned):
        console.print(f"[dim]... and {len(planned) - len(shown):,} more SAE(s); --all lists every one[/dim]")
    counts = {state: sum(p.state == state for p in planned) for state in ("to train", "to import", "to score", "done")}
    streams = {(p.declared.ref.model, p.declared.ref.train) for p in planned if p.state == "to train"}
    console.print(
        f"{counts['to train']} to train in {len(streams)} training stream(s) (SAEs sharing a model and stream "
        f"train from one forward pass), {counts['to import']} to import, {counts['to score']} to score, "
        f"{counts['done']} done. Evals: {escape(', '.join(task.name for task in tasks))}.", highlight=False)
    evals = [t.settings for t in tasks if t.kind == "core"]
    models = list({p.declared.ref.model: None for p in planned})
    print_budgets(console, eval_budgets(evals, models, store))
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from suite.executors import ExecutorError, make_executor
    from suite.runner import run_spec
    from suite.store import Store, StoreError
    from suite.tables import model_tables

    try:
        spec = load_spec(args.spec)
        from harness.threads import use_threads

        use_threads(args.threads)  # stored with the run (runs.threads)
        executor = make_executor(args.executor or spec.model.suite.executor, args.address, args.cpus_per_group)
        with sigterm_as_interrupt():
            outcome = run_spec(spec, args.db, args.device, console, executor, wandb_project=args.wandb)
    except SpecError as exc:
        print_spec_errors(exc, console)
        return EXIT_BAD_INPUT
    except (StoreError, ExecutorError) as exc:
        print_error(console, str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished SAEs and scores are stored; run again to resume")
        return EXIT_INTERRUPTED
    for table in model_tables(Store(outcome.db_path), outcome.sae_ids, console.width):
        console.print(table)
    console.print(
        f"run {outcome.run_id}: {outcome.trained} SAE(s) trained or imported, {outcome.scored} score(s) computed, "
        f"{sum(p.state == 'done' for p in outcome.planned)} SAE(s) already done, {outcome.failed} failure(s) "
        f"-> {escape(str(outcome.db_path))}", highlight=False)
    return EXIT_FAILED if outcome.failed else 0


__all__ = ["Spec", "cmd_plan", "cmd_run", "cmd_validate", "register"]
