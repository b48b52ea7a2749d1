"""Benchmark: `validate` and `plan` of a grid of exactly 100,000 SAEs (the limit), and the refusal
of one SAE more, as the user runs them (`sae-bench validate|plan`, fresh processes).

Prints wall seconds and peak memory per command; the plan's table shows its first rows and the
totals (`--all` would print every row). Usage:
    python benchmarks/grid_scale.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
[suite]
name = "grid"
db = "{db}"
[models.base]
id = "builtin:tiny-base"
[models.finetune]
id = "builtin:tiny-finetune"
[grid]
models = ["base", "finetune"]
layers = [0, 1]
[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = 12_000
ctx_len = 64
batch_size = 8
lr = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 8e-4, 9e-4, 1e-3]
seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[sae]
k = [{ks}]
latents = [96, 100, 104, 108, 112, 116, 120, 124, 128, 132]
[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
"""


def timed(*argv: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "suite.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"})
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"command": argv[0], "exit": done.returncode, "seconds": round(seconds, 2),
            "peak_rss_mib": round(max(peak, before) / 1024), "last_line": last[:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sae-bench-grid-"))
    work.mkdir(parents=True, exist_ok=True)
    at_limit = work / "grid-100000.toml"  # 2 models x 2 layers x 10 lr x 10 seeds x 25 k x 10 latents
    at_limit.write_text(SPEC.format(db=(work / "grid.duckdb").as_posix(), ks=", ".join(map(str, range(1, 26)))))
    over = work / "grid-104000.toml"  # 26 values of k: 104,000 SAEs
    over.write_text(SPEC.format(db=(work / "grid.duckdb").as_posix(), ks=", ".join(map(str, range(1, 27)))))
    baseline = timed("validate", str(ROOT / "specs" / "demo.toml"))  # start-up cost of a small spec
    results = [baseline, timed("validate", str(at_limit)), timed("plan", str(at_limit)), timed("validate", str(over))]
    print(json.dumps({"load": os.getloadavg(), "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
