"""Read-only access that is read-only for real, for `sae-bench sql`, the TUI and every reader.

DuckDB's `read_only=True` alone protects the opened file only: a statement can still ATTACH
another file (or the same one) for writing, COPY ... TO or EXPORT DATABASE anywhere, INSTALL or
LOAD extensions and read the network. So readers also turn external access off (DuckDB's
`enable_external_access`: no other files, no COPY/EXPORT, no extension loading), forbid
extension autoloading and autoinstalling, persistent secrets and Python replacement scans, and
then lock the configuration so no statement can turn any of it back on.

A reader must never make the writer fail: DuckDB lets a writer in only when no other process
has the file open, so a query that may take long (user SQL) runs on a private snapshot copy
while a run is writing. With `snapshot` the copy is taken while this process holds the file
read-only (as long as copying the file takes); with `snapshot_on_lock` (the writer held the file
past the reader's wait) it is taken without any hold. Either way `suite.store.snapshot` accepts
only a copy that did not change while being taken and that reads in full, else takes it again,
so a reader never sees a torn copy and the writer never waits for it.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from suite.store import snapshot as snapshots

# https://duckdb.org/docs/stable/operations_manual/securing_duckdb/overview (settings as in duckdb 1.1+)
READ_ONLY_CONFIG: dict[str, Any] = {
    "enable_external_access": False,  # no ATTACH of other files, COPY TO/FROM, EXPORT, read_csv, httpfs, LOAD
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,  # never reach the extension repository (network)
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,  # CREATE PERSISTENT SECRET writes under ~/.duckdb
    "python_enable_replacements": False,  # `select * from some_python_variable`
    "lock_configuration": True,  # last: SET/RESET/PRAGMA cannot undo the above
}
LOCK_WAIT_SECONDS = 60.0
# Statement kinds `sql` runs; everything else is refused before it reaches the database (the
# locked configuration above refuses it again if this list is ever wrong).
QUERY_KINDS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL", "MULTI"}


def open_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """One attempt. The path is made absolute so a name such as `md:x` is never read as a
    remote (MotherDuck) database."""
    return duckdb.connect(str(Path(path).absolute()), read_only=True, config=dict(READ_ONLY_CONFIG))


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


@contextmanager
def read_connection(path: str | Path, lock_wait: float = LOCK_WAIT_SECONDS, snapshot: bool = False,
                    snapshot_on_lock: bool = False) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
    """(a hardened read-only connection to `path` or to a private copy of it, whether a copy).

    `snapshot`: copy first (under a brief read-only hold of the live file) and read the copy.
    `snapshot_on_lock`: if the writer holds the file longer than `lock_wait`, copy it without
    the hold (what it had committed) instead of failing."""
    path = Path(path)
    deadline = time.monotonic() + lock_wait
    directory: Path | None = None
    while True:
        try:
            live = open_readonly(path)
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            if time.monotonic() > deadline:
                if not snapshot_on_lock:
                    raise
                directory, con = snapshots.take(path, open_readonly)
                break
            time.sleep(0.05 + random.random() * 0.2)
            continue
        if not snapshot:
            break
        try:
            directory, con = snapshots.take(path, open_readonly)
        finally:
            live.close()
        break
    if directory is None:
        con = live
    try:
        yield con, directory is not None
    finally:
        con.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def connect_readonly(path: str | Path, lock_wait: float = LOCK_WAIT_SECONDS) -> Iterator[duckdb.DuckDBPyConnection]:
    """A hardened read-only connection to the live file (waits out a writer's short transaction)."""
    with read_connection(path, lock_wait) as (con, _):
        yield con


class QueryRefused(RuntimeError):
    """A user query that cannot run: empty, not a read, or refused by the database. One line."""


@dataclass
class QueryResult:
    names: list[str]
    rows: list[tuple]
    snapshot: bool  # read from a private copy because a run was writing the file


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_query(sql: str) -> None:
    """Refuse, before touching the file, what cannot be a read-only query."""
    try:
        with duckdb.connect(":memory:", config=dict(READ_ONLY_CONFIG)) as parser:
            statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(_one_line(exc)) from None
    if not statements:
        raise QueryRefused("the query is empty (or only comments): give a statement such as "
                           "\"select * from layer_summary limit 10\"")
    for statement in statements:
        kind = statement.type.name
        if kind not in QUERY_KINDS:
            raise QueryRefused(f"read-only: a {kind} statement is not allowed (allowed: SELECT, WITH, FROM, "
                               f"DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA, CALL); the results file is changed "
                               f"only by `sae-bench run` and `sae-bench migrate`")


def run_query(path: str | Path, sql: str, writer_busy: bool | None = None) -> QueryResult:
    """Run a user's query read-only over a results file (the caller has checked it is one).

    While a run writes the file (`writer_busy`, looked up when None) the query reads a snapshot,
    so however long it takes it never holds the file against the writer."""
    from suite.store.lock import writer_active

    check_query(sql)
    busy = writer_active(path) if writer_busy is None else writer_busy
    try:
        with read_connection(path, snapshot=busy, snapshot_on_lock=True) as (con, copied):
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall() if names else []
            return QueryResult(names, rows, copied)
    except duckdb.PermissionException as exc:
        raise QueryRefused(f"read-only, external access off: {_one_line(exc)}") from None
    except duckdb.Error as exc:
        raise QueryRefused(_one_line(exc)) from None
