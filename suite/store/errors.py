"""Errors of the results store: each message is one line a user can act on."""

from __future__ import annotations

from pathlib import Path

from suite.store.schema import SCHEMA_VERSION


class StoreError(RuntimeError):
    pass


class NotResultsFile(StoreError):
    """A path that is not a readable sae-bench results file (missing, empty, text, SQLite,
    another program's DuckDB, damaged)."""


class OldSchema(StoreError):
    """A results file written by an earlier sae-bench: migrate it (`sae-bench migrate FILE`)."""

    def __init__(self, path: Path, found: int):
        self.found = found
        super().__init__(
            f"{path} was written with results schema version {found}; this sae-bench uses version "
            f"{SCHEMA_VERSION}. Migrate it with `sae-bench migrate {path}` (a backup is kept; SAEs are kept"
            f"{' and rescored' if found <= 2 else ' with their scores'}, nothing is retrained), or run its spec "
            f"again, which migrates it the same way.")


class NewSchema(StoreError):
    def __init__(self, path: Path, found: int):
        self.found = found
        super().__init__(f"{path} was written by a newer sae-bench (results schema version {found}; this one reads "
                         f"version {SCHEMA_VERSION}): upgrade sae-bench to read it")
