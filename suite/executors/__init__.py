"""Where a run's model groups execute: `local` (this process, the default) or `ray` (one Ray
task per group, results streamed back to this process, which alone writes the store)."""

from __future__ import annotations

from suite.executors.base import Executor, ExecutorError, model_groups
from suite.executors.local import LocalExecutor

EXECUTORS = ("local", "ray")


def make_executor(name: str, address: str | None = None, cpus_per_group: int | None = None) -> Executor:
    """The executor `name`; raises ExecutorError (one line) before anything runs or is written."""
    if name == "local":
        given = [flag for flag, value in (("--address", address), ("--cpus-per-group", cpus_per_group)) if value]
        if given:
            raise ExecutorError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for the ray executor: "
                                "add --executor ray (or set [suite] executor = \"ray\")")
        return LocalExecutor()
    if name == "ray":
        from suite.executors.ray import RayExecutor, import_ray

        import_ray()  # fail now, with the install hint, when Ray is missing
        return RayExecutor(address, cpus_per_group or 1)
    raise ExecutorError(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "LocalExecutor", "make_executor", "model_groups"]
