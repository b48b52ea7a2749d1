"""Shared fixtures: an isolated asset cache, a tiny spec, and one real run shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TINY_SPEC = """
[suite]
name = "tiny"
db = "{db}"

[models.base]
id = "builtin:tiny-base"
[models.finetune]
id = "builtin:tiny-finetune"

[grid]
models = ["base", "finetune"]
layers = [0, 1, 2]

[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = 12_000
ctx_len = 64
batch_size = 8
lr = 1e-3
log_every = 5

[sae]
k = 24
latents = 96
dead_tokens = 4_000

[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 1_536
sparsity_tokens = 4_096
ctx_len = 64
batch_size = 8
[eval.pylib]
dataset = {{ path = "builtin:pylib", split = "test" }}
tokens = 1_536
sparsity_tokens = 4_096
ctx_len = 64
batch_size = 8
"""


@pytest.fixture(scope="session", autouse=True)
def asset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in corpus and models go to the user's cache unless SAE_BENCH_TEST_FRESH_CACHE is set;
    the tiny models build in seconds either way."""
    if os.environ.get("SAE_BENCH_TEST_FRESH_CACHE"):
        os.environ["SAE_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("COLUMNS", "200")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Path(os.environ.get("SAE_BENCH_CACHE", ""))


def write_spec(directory: Path, text: str, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """One real `sae-bench run` of the tiny spec: (spec path, db path, exit code, output)."""
    from rich.console import Console

    from suite.cli import build_parser, cmd_run

    directory = tmp_path_factory.mktemp("tiny-run")
    db = directory / "tiny.duckdb"
    spec = write_spec(directory, TINY_SPEC.format(db=db))
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", str(spec)]), console)
    return spec, db, code, console.export_text()
