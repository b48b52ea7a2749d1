"""Shared by the test_hardening_* modules: a minimal real spec, and the state of a directory
(every file's bytes) to prove a command changed nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

# One model, one layer, a thousand training tokens, no absorption: a real run in seconds.
MINI_SPEC = """
[suite]
name = "mini"
db = "{db}"

[models.base]
id = "builtin:tiny-base"

[grid]
models = ["base"]
layers = {layers}

[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = {tokens}
ctx_len = 64
batch_size = 4
lr = {lr}
log_every = 5

[sae]
k = 8
latents = {latents}

[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 512
sparsity_tokens = 512
ctx_len = 64
batch_size = 8

[absorption]
enabled = false
"""


def mini_spec(directory: Path, name: str = "spec.toml", *, db: Path | None = None, layers: str = "[0]",
              tokens: int = 1024, lr: str = "1e-3", latents: str = "64", extra: str = "") -> Path:
    db = db or directory / "mini.duckdb"
    path = directory / name
    path.write_text(MINI_SPEC.format(db=db.as_posix(), layers=layers, tokens=tokens, lr=lr, latents=latents) + extra)
    return path


def tree_state(directory: Path) -> dict[str, str]:
    """Every file under `directory` (relative path -> sha256 of its bytes)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def statuses(db: Path) -> tuple[set[str], set[str]]:
    """(run statuses, SAE statuses) in a results file."""
    return ({r[0] for r in rows(db, "select status from runs")}, {r[0] for r in rows(db, "select status from saes")})
