"""Torch intra-op threads: a documented default instead of torch's "every core".

torch starts with one thread per core. On a machine whose cores are shared (another run, a test
suite, the TUI) that oversubscribes them, and small CPU matmuls (the SAE steps, the demo models)
then run several times slower than on one thread (benchmarks/threads.py; docs/performance.md).
The default leaves one core to everything else: `cores - 1`, at least 1. `run --threads N`
overrides it, and so does OMP_NUM_THREADS when set (torch reads it at start: that count stays);
the count a run used is stored with it (runs.threads). Under the Ray executor each
group's task sets its own (`--cpus-per-group`).
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    return max(1, (cores if cores is not None else available_cores()) - 1)


def use_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (None: OMP_NUM_THREADS if set, else the default) and return
    the count now in use."""
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else default_threads())
    return torch.get_num_threads()
