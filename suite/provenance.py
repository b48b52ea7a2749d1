"""What produced a run: package versions and platform, read without importing torch (the suite
never imports the engine's libraries for this)."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "sae-bench-suite"  # our distribution (PyPI's `sae-bench` is SAEBench)
PACKAGES = {"torch": "torch", "transformers": "transformers", "datasets": "datasets", "duckdb": "duckdb"}


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run_provenance() -> dict[str, str | None]:
    """Columns of `runs` (see docs/schema.md)."""
    return {
        "sae_bench_version": package_version(DISTRIBUTION),
        "python_version": platform.python_version(),
        **{f"{column}_version": package_version(dist) for column, dist in PACKAGES.items()},
        "platform": f"{platform.system()} {platform.release()} {platform.machine()} ({sys.implementation.name})",
    }
