"""What a killed run leaves behind, found and repaired.

A run killed with SIGKILL (or a lost machine) cannot mark its rows: its run stays `running` and
the SAE it was training `running` (or `pending`). Whether a run is live is known for sure from
the writer lock (`suite.store.lock`), so whoever finds the lock free may mark such rows
`interrupted`: the next `run` always does (holding the lock), and readers (`report`, `gate`, the
TUI) do it when no run holds the file. A `done` SAE whose checkpoint directory has vanished
keeps its scores; it is listed so reports can say so, and the next run trains it again.
"""

from __future__ import annotations

from pathlib import Path

from suite.store.errors import StoreError
from suite.store.lock import WriterLock, writer_active
from suite.store.store import Store

KILLED = "interrupted: its run stopped without finishing it (killed or lost); run the spec again to resume"


def stale_rows(store: Store) -> bool:
    row = store.query("select (select count(*) from runs where status = 'running') + "
                      "(select count(*) from saes where status in ('running', 'pending'))")
    return bool(row and row[0][0])


def reconcile(store: Store) -> tuple[list[str], list[str]]:
    """Mark `running` runs and `running`/`pending` SAEs `interrupted`. Only for a caller that
    holds the writer lock (no live run can own those rows). Returns (run ids, SAE ids)."""
    with store.transaction() as con:
        runs = [r[0] for r in con.execute(
            "update runs set status = 'interrupted' where status = 'running' returning run_id").fetchall()]
        saes = [r[0] for r in con.execute(
            "update saes set status = 'interrupted', error = ? where status in ('running', 'pending') "
            "returning sae_id", [KILLED]).fetchall()]
    return runs, saes


def reconcile_if_idle(path: str | Path) -> bool:
    """For readers: repair a killed run's rows when no run holds the file; never waits, never
    fails (a read-only file system or a busy file leaves the rows for the next run)."""
    try:
        if writer_active(path) or not stale_rows(Store(path, lock_wait=1.0)):
            return False
        with WriterLock(path, "reconcile"):
            reconcile(Store(path, write_wait=1.0))
        return True
    except (StoreError, OSError):
        return False


def missing_checkpoints(store: Store) -> list[dict]:
    """`done` SAEs trained here whose checkpoint directory is gone (their scores stand)."""
    rows = store.query_dicts("select sae_id, model, layer, hook, checkpoint_path from saes where status = 'done' "
                             "and source = 'trained' order by model, layer, sae_id")
    return [r for r in rows if not (r["checkpoint_path"] and Path(r["checkpoint_path"]).exists())]
