"""The `sae-bench` command line: one module per group of commands, each registering its
subcommands (`register(subparsers)`), so a new command is a new module.

Exit codes: 0 success, 1 some SAE, score or gate failed (or an unexpected error), 2 invalid
spec, arguments or results file (or the file is busy), 130 stopped. Errors are one line; the
traceback of an unexpected one is shown with --debug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from suite.cli import results, specs
from suite.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, one_line, print_error

MODULES = (specs, results)
DESCRIPTION = ("Train sparse autoencoders on language-model activations from a declarative spec, score them "
               "with SAEBench's metrics and keep every result in a DuckDB file.")
EXIT_CODES = ("exit codes: 0 success; 1 an SAE, score or gate failed (or an unexpected error); 2 invalid spec, "
              "arguments or results file; 130 stopped")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-bench", description=DESCRIPTION, epilog=EXIT_CODES)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the version (and the Python distribution's name) and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():  # `sae-bench run SPEC --debug` works too
        command.description = command.description or helps.get(name)  # `sae-bench run --help` says what it does
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an unexpected error")
    return parser


def version_text() -> str:
    """`sae-bench 0.1.0 (distribution sae-bench-suite, Python 3.11.7)`: the distribution's name
    is said because PyPI's `sae-bench` is another project (SAEBench)."""
    import platform

    from suite.provenance import DISTRIBUTION, package_version

    found = package_version(DISTRIBUTION)
    where = f"distribution {DISTRIBUTION}" if found else f"{DISTRIBUTION} not installed"
    return f"sae-bench {found or '(version unknown)'} ({where}, Python {platform.python_version()})"


def make_console() -> Console:
    """User text (names, values, errors) is never read as emoji codes such as `:train:`."""
    return Console(emoji=False)


def main(argv: Sequence[str] | None = None) -> int:
    from suite.store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    console = make_console()
    try:
        return args.func(args, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return EXIT_INTERRUPTED
    except StoreError as exc:
        print_error(console, str(exc))
        return EXIT_BAD_INPUT
    except Exception as exc:
        if args.debug:
            raise
        print_error(console, f"{one_line(exc)} (run again with --debug for the traceback)")
        return EXIT_FAILED


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    return specs.cmd_run(args, console)


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "build_parser", "cmd_run", "main", "make_console",
           "version_text"]

if __name__ == "__main__":
    sys.exit(main())
