"""One writer per results file: `run` and `migrate` hold an exclusive lock on `FILE.lock`.

An advisory `flock` on a sibling file, held for the whole run: the kernel drops it when the
process ends however it ends (SIGKILL included), so a lock can never be left stale, and whether
it is held tells readers whether a run is live (`writer_active`): a row still `running` while
nobody holds the lock belongs to a run that was killed. The file is left in place after a run
(removing a lock file races with the next process opening it); it holds the last writer's pid,
host and start time for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from suite.store.store import StoreError


class StoreBusy(StoreError):
    """Another process is writing this results file."""


def lock_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + ".lock")


class WriterLock:
    """`with WriterLock(db, "run"):` — StoreBusy at once if another writer holds the file."""

    def __init__(self, db: str | Path, purpose: str = "run"):
        self.db, self.purpose = Path(db), purpose
        self._handle = None

    def __enter__(self) -> "WriterLock":
        path = lock_path(self.db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+")
        except OSError as exc:
            raise StoreError(f"cannot write the results file {self.db} ({exc.strerror or exc}): choose a writable "
                             f"place with --db or [suite].db") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise StoreBusy(f"{self.db} is being written by another sae-bench {holder}: wait for it to finish, or "
                            f"write into another file with --db") from None
        except OSError as exc:  # a file system without locks: say so rather than write unguarded
            handle.close()
            raise StoreError(f"cannot lock {path} for writing ({exc.strerror or exc}); put the results file on a "
                             f"local disk") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "purpose": self.purpose,
                                 "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"{info.get('purpose', 'run')} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "process"


def writer_active(db: str | Path) -> bool:
    """Whether a `run` or `migrate` holds `db` now (any process on this machine, or one sharing
    the file system where it supports flock). Creates nothing."""
    path = lock_path(db)
    try:
        handle = path.open("r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
