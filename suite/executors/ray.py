"""The Ray executor: each model group is one Ray task; this process (the driver) alone writes
the store.

A group task (suite/executors/worker.py) asks for one GPU when the run uses GPUs, one CPU and
host memory estimated from its model (resources.py), trains and scores its SAEs with the same
engine the local executor runs, writes checkpoints under the shared checkpoint directory, and
streams every result, training curve, failure and progress bar back through a Ray queue. The
driver replays them on the runner's reporter as they arrive, so a result is stored as soon as it
exists and exactly as a local run stores it. A task is never retried: when one dies (its worker
is killed, its node lost) or raises, what its jobs left unfinished is marked failed with the
reason and the other groups go on; the next run retrains and rescores only that.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from suite.executors.base import ExecutorError, describe_group, model_groups
from suite.executors.display import GroupsDisplay
from suite.executors.events import Event, GroupStarted, Ledger, ProgressUpdate
from suite.executors.resources import GIB, Request, group_request
from suite.executors.worker import NotSharedError, mark_shared, run_group
from suite.jobs import Job, JobReporter

POLL_SECONDS = 0.2  # how long the driver waits for a task to finish between queue drains


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError("the ray executor needs Ray: pip install 'sae-bench-suite[ray]' "
                            "(or pip install ray), or run with --executor local") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_group: int = 1,
                 on_event: Callable[[Event], None] | None = None):
        """`address`: a running cluster (`auto`, `HOST:PORT`, `ray://HOST:PORT`); None starts a
        local Ray instance unless RAY_ADDRESS names one. `cpus_per_group`: CPUs each group task
        holds, and its torch threads. `on_event` sees every event after the driver applied it
        (for tests and tools)."""
        self.address, self.cpus_per_group, self.on_event = address, cpus_per_group, on_event
        self._started = False

    def open(self, device: str) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except Exception as exc:
                where = f"at {self.address}" if self.address else "locally"
                raise ExecutorError(f"cannot start or reach Ray {where}: {str(exc).splitlines()[0]}") from None
            self._started = True
        try:
            _gpus_per_group(device, _nodes(ray))
        except ExecutorError:
            self.close()
            raise

    def close(self) -> None:
        if self._started:
            import_ray().shutdown()
            self._started = False

    def run(self, jobs: list[Job], reporter: JobReporter, checkpoint_root: Path, device: str,
            console: Console | None) -> None:
        self.open(device)
        root = checkpoint_root.resolve()  # workers do not share the driver's working directory
        token = uuid.uuid4().hex
        mark = mark_shared(root, token)
        try:
            _Driver(import_ray(), jobs, reporter, console, self.on_event).run(root, token, device,
                                                                              self.cpus_per_group)
        finally:
            mark.unlink(missing_ok=True)


class _Driver:
    """One run's groups: submit them, apply their events as they arrive, settle each as it ends."""

    def __init__(self, ray: Any, jobs: list[Job], reporter: JobReporter, console: Console | None,
                 on_event: Callable[[Event], None] | None):
        from ray.util.queue import Queue

        self.ray, self.on_event = ray, on_event
        self.groups = model_groups(jobs)
        self.by_key = {job.key: job for job in jobs}
        self.ledger = Ledger(reporter)
        self.display = GroupsDisplay(console, [describe_group(group) for group in self.groups])
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.pending: dict[Any, int] = {}  # task ref -> group index

    def run(self, root: Path, token: str, device: str, cpus: int) -> None:
        try:
            with self.display:
                self._submit(root, token, device, cpus)
                while self.pending:
                    self._drain()
                    ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending),
                                             timeout=POLL_SECONDS)
                    if ready:
                        self._drain()  # a task's events are all queued before it returns
                    for ref in ready:
                        self._settle(ref)
        except BaseException as exc:
            for ref in self.pending:  # a stopped driver stops its tasks; the runner marks what they held
                self.ray.cancel(ref, force=True)
            if isinstance(exc, KeyboardInterrupt):
                try:
                    self._drain()  # results that arrived before the stop are kept
                except Exception:
                    pass
            raise
        finally:
            try:
                self.queue.shutdown(force=True)
            except Exception:
                pass

    def _submit(self, root: Path, token: str, device: str, cpus: int) -> None:
        nodes = _nodes(self.ray)
        gpus = _gpus_per_group(device, nodes)
        self.display.progress.console.print(
            f"[dim]Ray: {len(self.groups)} model group(s) on {len(nodes)} node(s) with "
            f"{sum(n.get('CPU', 0) for n in nodes):g} CPU(s), {sum(n.get('GPU', 0) for n in nodes):g} GPU(s); "
            f"checkpoints in {escape(str(root))}[/dim]", highlight=False)
        task = self.ray.remote(run_group)
        for index, group in enumerate(self.groups):
            request = group_request(group, gpus, cpus)
            why = _infeasible(request, nodes)
            if why:
                self.display.lost(index, why, self.ledger.lose(group, why))
                continue
            ref = task.options(num_cpus=request.cpus, num_gpus=request.gpus, memory=request.memory, max_retries=0,
                               name=f"sae-bench group {index + 1}").remote(index, group, str(root), token, device,
                                                                          cpus, self.queue)
            self.pending[ref] = index

    def _drain(self) -> None:
        while size := self.queue.size():
            for event in self.queue.get_nowait_batch(size):
                self._apply(event)

    def _apply(self, event: Event) -> None:
        if isinstance(event, GroupStarted):
            self.display.started(event)
        elif isinstance(event, ProgressUpdate):
            self.display.update(event)
        else:
            self.ledger.apply(event, self.by_key[getattr(event, "job_key")])
        if self.on_event is not None:
            self.on_event(event)

    def _settle(self, ref: Any) -> None:
        index = self.pending.pop(ref)
        try:
            self.ray.get(ref)
        except Exception as exc:
            reason = lost_reason(exc)
            self.display.lost(index, reason, self.ledger.lose(self.groups[index], reason))
        else:
            self.display.finished(index)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT nobody listens on fails now: `ray.init` would retry it for many minutes."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ExecutorError(f"no Ray cluster answers at {address} ({exc}): start one with `ray start --head` "
                            "(docs/cluster.md) or check --address") from None


def _nodes(ray: Any) -> list[dict]:
    """The resources of each live node."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _gpus_per_group(device: str, nodes: list[dict]) -> float:
    total = sum(node.get("GPU", 0) for node in nodes)
    if device == "cuda" and not total:
        raise ExecutorError("device 'cuda' asked for, but no node of the Ray cluster has a GPU "
                            "(start workers with GPUs, or run with --device cpu)")
    return 1 if device == "cuda" or (device == "auto" and total) else 0


def _infeasible(request: Request, nodes: list[dict]) -> str | None:
    """Why no node can ever run the request (Ray would leave it pending forever), or None."""
    def fits(node: dict) -> bool:
        return (node.get("CPU", 0) >= request.cpus and node.get("GPU", 0) >= request.gpus
                and node.get("memory", 0) >= request.memory)

    if any(fits(node) for node in nodes):
        return None
    best = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("memory", 0)), default={})
    return (f"no node of the Ray cluster can run this group: it needs {request.describe()}; the largest node "
            f"offers {best.get('GPU', 0):g} GPU, {best.get('CPU', 0):g} CPU, {best.get('memory', 0) / GIB:.1f} GiB "
            "memory (add a bigger node, or lower the model's dtype)")


def lost_reason(exc: BaseException) -> str:
    """The error stored on a lost group's unfinished jobs: the task's own error where it raised,
    otherwise what happened to its worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, NotSharedError):
        return str(cause)
    if isinstance(cause, BaseException):
        first = (str(cause).splitlines() or [""])[0]
        return f"lost: the group's task failed: {type(cause).__name__}: {first}"
    return (f"lost: the Ray worker running this group died ({type(exc).__name__}: killed, out of memory, or its "
            "node left the cluster); run again to resume")
