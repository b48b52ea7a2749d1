"""Private snapshot copies of a results file that a reader can trust while a run writes it.

A reader that cannot get the file (a writer holds it past the reader's wait) copies it, and
a copy taken while the writer commits or checkpoints can be torn: DuckDB's header from one
state, some blocks or the `.wal` from the next (seen as "Corrupted DICT_FSST segment", "Could
not read enough bytes", a `.wal` vanishing mid-copy). The writer is never asked to wait, so a
copy is accepted only when

1. the database file and its `.wal` are unchanged across the copy (inode, size, mtime in ns,
   taken before and after; a `.wal` that appears or vanishes counts as a change), and
2. the copy opens read-only and every table scans in full (`bit_xor(hash(t))` reads every
   column of every row, so every block's checksum and every segment's encoding is checked),

and otherwise is thrown away and taken again after a short, growing, jittered pause. After
`ATTEMPTS` torn copies in a row the reader gives up with one line (`SnapshotFailed`), or, when
the file did not change since the last copy, with that copy's DuckDB error (the file itself is
damaged). The writer never notices any of this.

The database file is read through one descriptor per file that this process keeps open: DuckDB
locks the file with POSIX (fcntl) locks, which the kernel drops as soon as the process closes
*any* descriptor of that file, so an ordinary open-copy-close would silently release the lock of
a connection this process holds on it (the TUI's refresh, the hold of `snapshot=True`) and let a
writer checkpoint under that connection's reads.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from suite.store.errors import StoreError

SNAPSHOT_PREFIX = "sae-bench-snapshot-"
ATTEMPTS = 12
FIRST_PAUSE_SECONDS = 0.02
LAST_PAUSE_SECONDS = 0.5

CHUNK_BYTES = 1 << 20

Signature = tuple[tuple[int, int, int] | None, ...]

_descriptors: dict[str, int] = {}  # absolute path -> a read-only descriptor, never closed (see above)
_descriptors_lock = threading.Lock()


class SnapshotFailed(StoreError):
    """Every copy of the file changed under the reader: a writer is checkpointing nonstop."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_snapshots() -> None:
    """Snapshot directories of readers that were killed (their pid is in the name)."""
    root = Path(tempfile.gettempdir())
    for directory in root.glob(f"{SNAPSHOT_PREFIX}*"):
        pid = directory.name[len(SNAPSHOT_PREFIX):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def signature(path: Path) -> Signature:
    """(inode, size, mtime ns) of the file and of its `.wal` (None: absent)."""
    found = []
    for part in (path, wal_path(path)):
        try:
            st = part.stat()
        except FileNotFoundError:
            found.append(None)
            continue
        found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def check_copy(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every row of every table (a torn copy fails here)."""
    tables = [r[0] for r in con.execute(
        "select table_name from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'main'").fetchall()]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        con.execute(f"select count(*), bit_xor(hash(t)) from {quoted} as t").fetchall()


def _descriptor(path: Path) -> int:
    """This process's lasting read-only descriptor of `path` (a new one if the file was replaced)."""
    key = str(path.absolute())
    with _descriptors_lock:
        fd = _descriptors.get(key)
        if fd is not None and os.fstat(fd).st_ino == os.stat(key).st_ino:
            return fd
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        _descriptors[key] = fd  # a replaced file's old descriptor stays open: closing it could drop a lock
        return fd


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of `path`, read through `_descriptor`: opening and closing the file
    here would drop any DuckDB lock this process holds on it (POSIX locks)."""
    return os.pread(_descriptor(path), size, 0)


def _copy_without_closing(path: Path, target: Path) -> None:
    """Copy `path` to `target` through `_descriptor` (positional reads: safe across threads)."""
    fd = _descriptor(path)
    offset = 0
    with target.open("wb") as out:
        while chunk := os.pread(fd, CHUNK_BYTES, offset):
            out.write(chunk)
            offset += len(chunk)


def _copy_once(path: Path, directory: Path) -> Signature | None:
    """Copy the file and its `.wal` into `directory`: the files' signature, None when they
    changed meanwhile."""
    before = signature(path)
    if before[0] is None:
        raise FileNotFoundError(f"{path}: no such results file")
    copy = directory / path.name
    for stale in (copy, wal_path(copy)):
        stale.unlink(missing_ok=True)
    try:
        _copy_without_closing(path, copy)
        if before[1] is not None:
            shutil.copyfile(wal_path(path), wal_path(copy))
    except FileNotFoundError:  # the `.wal` went away with a checkpoint
        return None
    return before if signature(path) == before else None


def take(path: Path, open_copy: Callable[[Path], duckdb.DuckDBPyConnection],
         attempts: int = ATTEMPTS) -> tuple[Path, duckdb.DuckDBPyConnection]:
    """(a private directory holding a checked copy of `path`, a connection to that copy).
    The caller closes the connection and removes the directory."""
    clean_stale_snapshots()
    directory = Path(tempfile.mkdtemp(prefix=f"{SNAPSHOT_PREFIX}{os.getpid()}-"))
    last = "the file changed during every copy"
    failure: duckdb.Error | None = None  # the last copy's, if the file did not change since
    try:
        for attempt in range(attempts):
            if attempt:
                pause = min(LAST_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (attempt - 1))
                time.sleep(pause * (0.5 + random.random()))
            copied = _copy_once(path, directory)
            failure = None
            if copied is None:
                last = "the file changed during the copy"
                continue
            con = None
            try:
                con = open_copy(directory / path.name)
                check_copy(con)
            except duckdb.Error as exc:
                if con is not None:
                    con.close()
                last = " ".join(str(exc).split())[:200]
                failure = exc if signature(path) == copied else None
                continue
            return directory, con
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    if failure is not None:  # nobody wrote the file since the copy: it is itself unreadable
        raise failure
    raise SnapshotFailed(f"could not take a consistent snapshot of {path} in {attempts} tries while another "
                         f"process writes it (last: {last}); try again")
