"""One writer, patient readers: a second `run` on a file being written is refused in one line;
readers (user SQL, a `duckdb` shell) never make the writer fail; a killed run is shown
`interrupted`, its temp directories are cleaned and the next run resumes it; a `done` SAE whose
checkpoint vanished is reported. Real processes, real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from hardening_fixtures import mini_spec, rows, statuses
from suite.cli import main
from suite.store.lock import writer_active
from suite.store.readonly import connect_readonly

ROOT = Path(__file__).resolve().parents[1]


def start_run(spec: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(spec)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env})


def wait_for(condition, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def sae_states(db: Path) -> set[str]:
    try:
        with connect_readonly(db, lock_wait=5.0) as con:
            return {r[0] for r in con.execute("select status from saes").fetchall()}
    except duckdb.Error:
        return set()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_second_run_is_refused_while_the_first_writes(tmp_path):
    spec = mini_spec(tmp_path, layers="[0, 1]", tokens=8192)
    db = tmp_path / "mini.duckdb"
    first = start_run(spec)
    try:
        wait_for(lambda: writer_active(db) or first.poll() is not None, what="the first run to take the lock")
        second = subprocess.run([sys.executable, "-m", "suite.cli", "run", str(spec)], cwd=ROOT, text=True,
                                capture_output=True, env=dict(os.environ))
        out_first, _ = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, out_first
    assert second.returncode == 2
    lines = second.stdout.strip().splitlines()
    assert len(lines) == 1 and "is being written by another sae-bench run (pid" in lines[0], second.stdout
    assert f"(pid {first.pid} on " in lines[0]
    assert rows(db, "select count(*), min(status) from runs") == [(1, "finished")]  # the second wrote nothing
    assert rows(db, "select count(*) from saes where status = 'done'") == [(2,)]


def test_readers_never_make_the_writer_fail(tmp_path):
    """A plain read-only connection (a `duckdb` shell) holds the file for seconds during the
    run; the run waits, says so, and finishes. `sql` meanwhile reads a snapshot."""
    spec = mini_spec(tmp_path, layers="[0, 1]", tokens=8192)
    db = tmp_path / "mini.duckdb"
    run = start_run(spec, SAE_BENCH_WAIT_NOTICE_SECONDS="0.5")
    try:
        wait_for(lambda: "running" in sae_states(db) or run.poll() is not None, what="an SAE to start")
        with duckdb.connect(str(db), read_only=True) as shell:
            shell.execute("select count(*) from saes").fetchall()
            time.sleep(8.0)  # longer than the 5 s between training-curve writes
        out, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, out
    assert "waiting for" in out and "holds" in out and "Traceback" not in out
    assert rows(db, "select count(*) from saes where status = 'done'") == [(2,)]


def test_sql_reads_a_snapshot_while_a_run_writes(tmp_path, capsys):
    spec = mini_spec(tmp_path, layers="[0, 1]", tokens=8192)
    db = tmp_path / "mini.duckdb"
    run = start_run(spec)
    try:
        wait_for(lambda: "running" in sae_states(db) or run.poll() is not None, what="an SAE to start")
        assert main(["sql", str(db), "select count(*) from runs"]) == 0
        out, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert "(read from a snapshot: a run is writing the file)" in capsys.readouterr().out
    assert run.returncode == 0, out


def test_killed_run_is_interrupted_cleaned_and_resumed(tmp_path, capsys, monkeypatch):
    spec = mini_spec(tmp_path, layers="[0, 1]", tokens=16384)
    db = tmp_path / "mini.duckdb"
    checkpoints = tmp_path / "mini-checkpoints"
    run = start_run(spec)
    try:
        wait_for(lambda: "running" in sae_states(db) or run.poll() is not None, what="an SAE to start")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert run.returncode == -signal.SIGKILL
    assert "running" in statuses(db)[0] and "running" in statuses(db)[1]  # what SIGKILL leaves

    pid = dead_pid()  # temp directories a killed process left: a checkpoint and a reader's snapshot
    stale_checkpoint = checkpoints / f".ckpt-{pid}-abcdef"
    stale_checkpoint.mkdir(parents=True)
    stale_snapshot = Path(tempfile.gettempdir()) / f"sae-bench-snapshot-{pid}-abcdef"
    stale_snapshot.mkdir()
    alive_checkpoint = checkpoints / f".ckpt-{os.getpid()}-abcdef"  # a live process's: kept
    alive_checkpoint.mkdir()
    from harness.builtin import cache_root

    stale_build = cache_root() / "models" / f".tiny-base-{pid}-abcdef"  # a built-in model being built
    stale_build.mkdir(parents=True)

    monkeypatch.setenv("COLUMNS", "200")  # the message is checked below, not how it wraps at 80 (tests/test_cli_width.py)
    assert main(["gate", str(db)]) == 1  # a reader repairs the rows: no run holds the file
    out = capsys.readouterr().out
    assert "is interrupted: interrupted: its run stopped without finishing it" in out
    assert statuses(db) == ({"interrupted"}, statuses(db)[1]) and "running" not in statuses(db)[1]

    assert main(["run", str(spec)]) == 0
    assert rows(db, "select count(*) from saes where status = 'done'") == [(2,)]
    assert rows(db, "select status from runs order by started_at") == [("interrupted",), ("finished",)]
    assert not stale_checkpoint.exists() and alive_checkpoint.exists() and not stale_build.exists()
    assert main(["sql", str(db), "select 1"]) == 0  # a read that may snapshot cleans dead readers' copies
    capsys.readouterr()
    from suite.store.readonly import read_connection

    with read_connection(db, snapshot=True):
        pass
    assert not stale_snapshot.exists()

    # a done SAE whose checkpoint vanished: reported by readers, trained again by the next run
    sae_id, path = rows(db, "select sae_id, checkpoint_path from saes order by layer limit 1")[0]
    import shutil

    shutil.rmtree(path)
    assert main(["report", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"SAE {sae_id} (base layer 0) is done but its checkpoint" in out and "is missing" in out
    assert main(["plan", str(spec)]) == 0
    assert "its checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("purpose", ["run", "migrate"])
def test_lock_message_names_the_holder(tmp_path, purpose):
    from suite.store.lock import StoreBusy, WriterLock

    db = tmp_path / "x.duckdb"
    with WriterLock(db, purpose):
        assert writer_active(db)
        with pytest.raises(StoreBusy, match=f"another sae-bench {purpose} \\(pid {os.getpid()} on "):
            with WriterLock(db):
                pass
    assert not writer_active(db)


async def test_tui_shows_a_killed_run_as_interrupted(tmp_path):
    """Rows a SIGKILLed run left `running` (no process holds the lock) read `interrupted`."""
    from textual.widgets import DataTable

    from tui.app import SaeBenchApp
    from tui_fixture import build

    db = build(tmp_path / "killed.duckdb")
    with duckdb.connect(str(db)) as con:
        con.execute("update runs set status = 'running'")
        con.execute("update saes set status = 'running' where layer = 10")
    app = SaeBenchApp(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        runs = app.screen.query_one("#runs", DataTable)
        assert str(runs.get_row_at(0)[3]) == "interrupted"
        await pilot.press("q")
    assert rows(db, "select distinct status from saes where layer = 10") == [("interrupted",)]
