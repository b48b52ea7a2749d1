"""Wall and CPU time of a piece of work, for benchmarks on shared machines.

With one torch thread per process, the process's CPU time is the work it did and barely moves
when other processes share the cores, while wall time includes every wait for a core. Ratios of
CPU times measured interleaved in one process are what these benchmarks report first on a busy
machine; wall-time ratios are printed beside them (on an idle machine the two agree). On a GPU
only wall time (after a synchronize) means anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Timed:
    wall: float = 0.0
    cpu: float = 0.0


class clock:
    """with clock() as t: ...  then t.wall and t.cpu are seconds."""

    def __enter__(self) -> Timed:
        self.timed = Timed()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self.timed

    def __exit__(self, *exc) -> None:
        self.timed.wall = time.perf_counter() - self._wall
        self.timed.cpu = time.process_time() - self._cpu
