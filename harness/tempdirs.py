"""Temporary directories beside their final place (checkpoints, built-in assets) that a killed
process cannot leave behind for good: each name carries the pid of its maker, and making one
first removes those whose maker is dead (on this machine)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

LEGACY_MAX_AGE_SECONDS = 3600.0  # names without a pid (earlier versions): removed once this old


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove `parent/prefix*` directories left by dead processes; returns what was removed."""
    removed = []
    try:
        candidates = [p for p in parent.glob(f"{prefix}*") if p.is_dir()]
    except OSError:
        return removed
    for directory in candidates:
        head, sep, _ = directory.name[len(prefix):].partition("-")
        if sep and head.isdigit():
            stale = int(head) != os.getpid() and not pid_alive(int(head))
        else:
            try:
                stale = time.time() - directory.stat().st_mtime > LEGACY_MAX_AGE_SECONDS
            except OSError:
                continue
        if stale:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new directory `parent/{prefix}{pid}-XXXX`, after cleaning stale ones of that prefix."""
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
