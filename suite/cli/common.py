"""What every command shares: exit codes, error printing, opening a results file to read."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from suite.spec import SpecError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def print_error(console: Console, message: str) -> None:
    """One line, user text printed literally (never read as rich markup)."""
    console.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)


def print_spec_errors(exc: SpecError, console: Console) -> None:
    for problem in exc.problems:
        print_error(console, f"{exc.path}: {problem}")


def existing_db(path: str, console: Console) -> Path | None:
    """The results file to read, or None after printing in one line why it cannot be read
    (missing, not a sae-bench file, another schema version). Never writes to it."""
    from suite.store import Store, StoreError

    db = Path(path)
    try:
        Store(db).check_schema()
    except StoreError as exc:
        hint = " (run `sae-bench run SPEC` first)" if not db.exists() else ""
        print_error(console, f"{exc}{hint}")
        return None
    return db


def readable_db(path: str, console: Console, notices: Console | None = None) -> Path | None:
    """`existing_db`, then rows a killed run left `running` are marked `interrupted` when no
    run holds the file, and SAEs whose checkpoint vanished are named (on `notices`, default
    `console`)."""
    from suite.store import Store
    from suite.store.recovery import missing_checkpoints, reconcile_if_idle

    db = existing_db(path, console)
    if db is None:
        return None
    reconcile_if_idle(db)
    for sae in missing_checkpoints(Store(db)):
        (notices or console).print(f"[yellow]warning[/yellow] SAE {sae['sae_id']} ({escape(sae['model'])} layer {sae['layer']}) "
                      f"is done but its checkpoint {escape(str(sae['checkpoint_path']))} is missing: its scores "
                      f"stand; the next `run` of its spec trains it again", highlight=False, soft_wrap=True)
    return db


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` stops a run like Ctrl-C: its rows are marked interrupted before it exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
