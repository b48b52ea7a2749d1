"""The `sae-bench` command line: one module per group of commands, each registering its
subcommands (`register(subparsers)`), so a new command is a new module.

Exit codes: 0 success, 1 some SAE, score or gate failed, 2 invalid spec, arguments or results
file, 130 stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from suite.cli import results, specs
from suite.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED

MODULES = (specs, results)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    return args.func(args, console)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    return specs.cmd_run(args, console)


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "build_parser", "cmd_run", "main"]

if __name__ == "__main__":
    sys.exit(main())
