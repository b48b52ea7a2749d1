"""Is this file a sae-bench results file? Decided before DuckDB is asked to do anything with it.

Readers (report, gate, sql, export, tui, the pytest plugin) and the writer (`run --db`) call
`identify` first, so a file that is not ours gets one line naming it and is never modified: the
first bytes are read as plain bytes (empty, text, SQLite, not DuckDB), then a DuckDB file is
opened read-only with external access off (no extension autoload or install, so no network),
and only a file with sae-bench's `meta.schema_version` and the tables and columns of that
version (suite.store.structure), or the table set of the unversioned first release, counts as
ours. An empty DuckDB database (no tables) is one `run` may fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from suite.store.errors import NotResultsFile, StoreError
from suite.store.readonly import LOCK_WAIT_SECONDS, is_lock_error, read_connection
from suite.store.snapshot import read_head
from suite.store.structure import missing

DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file (storage header)
SQLITE_MAGIC = b"SQLite format 3\x00"
V1_TABLES = {"runs", "jobs", "metrics", "train_log", "gates"}  # the first release had no `meta` table


@dataclass(frozen=True)
class Identity:
    """What a DuckDB file holds: no tables (`version` None, `empty` True) or sae-bench results."""

    version: int | None
    empty: bool = False


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of `head` is still text
        return exc.start >= len(head) - 3
    return True


def _sniff(path: Path) -> None:
    """Refuse what is plainly not a DuckDB file from its first bytes alone."""
    if not path.exists():
        raise NotResultsFile(f"no results database at {path}")
    if not path.is_file():
        raise NotResultsFile(f"{path} is not a file")
    try:
        head = read_head(path, 4096)
    except OSError as exc:
        raise NotResultsFile(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise NotResultsFile(f"{path} is empty (0 bytes), not a sae-bench results file")
    if head.startswith(SQLITE_MAGIC):
        raise NotResultsFile(f"{path} is a SQLite database, not a sae-bench results file (DuckDB)")
    if head[8:12] != DUCKDB_MAGIC:
        kind = "a text file" if _looks_like_text(head) else "not a DuckDB database"
        raise NotResultsFile(f"{path} is {kind}, not a sae-bench results file")


def _check_complete(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A file cut short keeps a readable header and catalog; its used blocks tell the least size
    it must have (checked without a WAL, whose replay may add blocks that are not on disk)."""
    if path.with_name(path.name + ".wal").exists():
        return
    row = con.execute("select block_size, total_blocks - free_blocks from pragma_database_size() "
                      "where database_name = current_database()").fetchone()
    if row and row[0] and row[1] and path.stat().st_size < row[0] * row[1]:
        raise NotResultsFile(f"{path} is a damaged DuckDB file (cut short: {path.stat().st_size:,} bytes, its blocks "
                             f"need at least {row[0] * row[1]:,})")


def _check_structure(con: duckdb.DuckDBPyConnection, path: Path, version: int) -> None:
    """The file holds the tables and columns of the version its `meta` claims (suite.store.structure)."""
    lacking = missing(con, version)
    if lacking:
        shown = ", ".join(lacking[:6]) + (f" and {len(lacking) - 6} more" if len(lacking) > 6 else "")
        raise NotResultsFile(f"{path} says results schema version {version} but lacks what that version holds "
                             f"({shown}): a damaged file, or not a sae-bench results file")


def identify(path: str | Path, lock_wait: float = LOCK_WAIT_SECONDS, snapshot_on_lock: bool = False) -> Identity:
    """The schema version of a sae-bench results file, or NotResultsFile with one line saying
    what the file is instead. Never writes to `path`."""
    path = Path(path)
    _sniff(path)
    try:
        with read_connection(path, lock_wait, snapshot_on_lock=snapshot_on_lock) as (con, _):
            tables = {r[0] for r in con.execute(
                "select table_name from information_schema.tables where table_catalog = current_database() "
                "and table_schema = 'main'").fetchall()}
            _check_complete(con, path)
            if not tables:
                return Identity(None, empty=True)
            if "meta" in tables:
                columns = {r[0] for r in con.execute(
                    "select column_name from information_schema.columns where table_catalog = current_database() "
                    "and table_name = 'meta'").fetchall()}
                row = con.execute("select value from meta where key = 'schema_version'").fetchone() \
                    if {"key", "value"} <= columns else None
                if row is not None:
                    if not str(row[0]).isdigit():
                        raise NotResultsFile(f"{path}: unreadable results schema version {row[0]!r}")
                    _check_structure(con, path, int(row[0]))
                    return Identity(int(row[0]))
            elif V1_TABLES <= tables:
                return Identity(1)
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise StoreError(f"{path} is held by another process for longer than {lock_wait:g} s; try again when it "
                             f"is done") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotResultsFile(f"{path} is a damaged or unreadable DuckDB file ({first})") from None
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    raise NotResultsFile(f"{path} is a DuckDB database of another program (tables: {shown}), not a sae-bench "
                         f"results file")
