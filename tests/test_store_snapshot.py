"""A reader's snapshot copy is never torn: copies taken while a real writer process commits and
checkpoints big transactions nonstop all read in full and show one committed state. Without the
checks in `suite.store.snapshot` this loop hits "Could not read enough bytes", a `.wal` that
vanished mid-copy or a corrupted segment within seconds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from suite.store import snapshot as snapshots
from suite.store.readonly import open_readonly, read_connection

# Each transaction adds 20,000 rows of strings to `a` and the same rows to `b`, and drops rows
# of older transactions (their blocks are reused by the next checkpoint). Every connection is
# closed after its write, as `Store` does, so every write ends in a checkpoint.
WRITER = """
import random, string, sys, time
import duckdb
db = sys.argv[1]
def connect():
    while True:
        try:
            return duckdb.connect(db)
        except duckdb.IOException:
            time.sleep(0.005)
con = connect()
con.execute("create table a(i int, s varchar)")
con.execute("create table b(i int, s varchar)")
con.close()
print("ready", flush=True)
for i in range(1, 10**9):
    con = connect()
    con.execute("begin")
    words = ["".join(random.choices(string.ascii_lowercase, k=12)) for _ in range(50)]
    con.execute("insert into a select ?, list_element(?, (random() * 49)::int + 1) || r::varchar "
                "from range(20000) t(r)", [i, words])
    con.execute("insert into b select i, s from a where i = ?", [i])
    con.execute("delete from a where i < ?", [i - 3])
    con.execute("delete from b where i < ?", [i - 3])
    con.execute("commit")
    con.close()
"""


def test_snapshots_taken_while_a_writer_checkpoints_are_never_torn(tmp_path):
    db = tmp_path / "busy.duckdb"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    reads = copies = 0
    newest = 0
    try:
        assert writer.stdout.readline().strip() == "ready"
        end = time.monotonic() + 12.0
        while time.monotonic() < end:
            # lock_wait 0: whenever the writer holds the file, copy it without any hold
            with read_connection(db, lock_wait=0.0, snapshot_on_lock=True) as (con, copied):
                a = con.execute("select count(*), max(i), bit_xor(hash(s)) from a").fetchone()
                b = con.execute("select count(*), max(i), bit_xor(hash(s)) from b").fetchone()
            assert a == b  # both tables are written in one transaction: a copy shows both or neither
            assert a[0] == 20000 * min(4, a[1] or 0)  # the last four transactions, whole
            assert (a[1] or 0) >= newest  # never an older state than one already seen
            newest = a[1] or 0
            reads += 1
            copies += copied
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode is not None and reads > 0
    assert copies > 0, "the reader never had to copy: the test did not exercise the snapshot"
    assert newest > 1


def test_a_file_that_keeps_changing_gives_up_in_one_line(tmp_path, monkeypatch):
    db = tmp_path / "x.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select 1 as x")
    ticks = iter(range(10**6))
    monkeypatch.setattr(snapshots, "signature", lambda path: ((next(ticks), 0, 0), None))
    with pytest.raises(snapshots.SnapshotFailed, match=r"^could not take a consistent snapshot of .* in 3 tries"):
        snapshots.take(db, open_readonly, attempts=3)
    assert not list(Path(snapshots.tempfile.gettempdir()).glob(f"{snapshots.SNAPSHOT_PREFIX}{snapshots.os.getpid()}-*"))


def test_a_damaged_file_that_does_not_change_is_reported_as_damaged(tmp_path):
    """Not a torn copy: every copy fails the same way, and the reader gets DuckDB's error."""
    db = tmp_path / "damaged.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select r, repeat(r::varchar, 40) s from range(200000) t(r)")
    raw = bytearray(db.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 4096] = b"\xa5" * 4096  # inside a data block: its checksum no longer matches
    db.write_bytes(bytes(raw))
    with open_readonly(db) as con:  # the header and catalog are intact: only a full scan notices
        con.execute("select count(*) from t").fetchall()
    with pytest.raises(duckdb.Error) as caught:
        snapshots.take(db, open_readonly, attempts=2)


def test_a_snapshot_keeps_this_process_s_hold_on_the_file(tmp_path):
    """DuckDB's lock is a POSIX lock, dropped when the process closes any descriptor of the file:
    copying the file must not let a writer in under a connection this process holds (the TUI
    reads in one thread while its SQL screen takes a snapshot in another)."""
    db = tmp_path / "held.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select 1 as x")
    writer = [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}).close()"]
    with open_readonly(db) as held:
        with read_connection(db, snapshot=True) as (copy, copied):
            assert copied and copy.execute("select x from t").fetchall() == [(1,)]
        refused = subprocess.run(writer, capture_output=True, text=True)
        assert refused.returncode != 0 and "Could not set lock" in refused.stderr
        assert held.execute("select x from t").fetchall() == [(1,)]
    assert subprocess.run(writer, capture_output=True, text=True).returncode == 0  # let go: the writer gets in


def test_identifying_a_file_keeps_this_process_s_hold_on_it(tmp_path):
    """Every reader first sniffs the file's header (`suite.store.files`); reading it through a
    fresh descriptor and closing it would drop the DuckDB lock a connection of this process holds."""
    from suite.store.files import _sniff

    db = tmp_path / "held.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select 1 as x")
    writer = [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}).close()"]
    with open_readonly(db) as held:
        _sniff(db)
        refused = subprocess.run(writer, capture_output=True, text=True)
        assert refused.returncode != 0 and "Could not set lock" in refused.stderr
        assert held.execute("select x from t").fetchall() == [(1,)]
