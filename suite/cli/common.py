"""What every command shares: exit codes, spec error printing, opening a results file to read."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from suite.spec import SpecError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def print_error(console: Console, message: str) -> None:
    """One line, user text printed literally (never read as rich markup)."""
    console.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)


def print_spec_errors(exc: SpecError, console: Console) -> None:
    for problem in exc.problems:
        print_error(console, f"{exc.path}: {problem}")


def existing_db(path: str, console: Console) -> Path | None:
    """The results file to read, or None after printing why it cannot be read."""
    from suite.store import Store, StoreError

    db = Path(path)
    try:
        Store(db).check_schema()
    except StoreError as exc:
        hint = " (run `sae-bench run SPEC` first)" if not db.is_file() else ""
        print_error(console, f"{exc}{hint}")
        return None
    return db
