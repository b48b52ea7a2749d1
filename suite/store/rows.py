"""Set-based writes: many rows in one statement, for a run of 10,000 SAEs as for one.

DuckDB's `executemany` runs one statement per row (milliseconds each), so the store writes rows
as columns: each column is one list parameter, unnested in DuckDB (`insert ... select
unnest(?), unnest(?), ...`), and updates and deletes name their keys as one list. One
statement per table, whatever the number of rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from suite.health import GatePolicy, GateResult
    from suite.jobs import Job, ScoreResult, ScoreTask, TrainLogRow, TrainResult

SCORE_TABLES = ("metrics", "metric_notes", "latent_density", "absorption_letters", "sparse_probing", "gates")
SAE_COLUMNS = ("sae_id", "sae_key", "source", "suite", "model", "label", "model_id", "model_revision", "model_dtype",
               "hook", "layer", "arch", "k", "latents", "lr", "batch_size", "ctx_len", "train_tokens", "seed",
               "train_dataset", "settings", "status", "run_id")
SCORE_COLUMNS = ("score_id", "score_key", "sae_id", "eval_name", "eval_kind", "eval_dataset", "eval_settings",
                 "metric_version", "status", "run_id", "finished_at", "seconds", "dataset_fingerprint",
                 "device_name", "warning", "loaded_dtype")
READY_COLUMNS = ("checkpoint_path", "d_model", "train_seconds", "tokens_per_second", "weights_sha256", "model_sha",
                 "train_fingerprint", "device_name", "loaded_dtype", "hook_name", "arch", "k", "latents")
KEEP_IF_NULL = {"hook_name", "arch", "k", "latents"}  # an import's files say these; a trained SAE's spec did


def _plain(value: Any) -> Any:
    """numpy and torch scalars as Python numbers (a list parameter must be of plain values)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence],
                replace: bool = False) -> None:
    """`rows` into `table` in one statement."""
    if not rows:
        return
    data = [[_plain(v) for v in column] for column in zip(*rows)]
    verb = "insert or replace" if replace else "insert"
    unnests = ", ".join("unnest(?)" for _ in columns)
    con.execute(f"{verb} into {table} ({', '.join(columns)}) select {unnests}", data)


def update_rows(con: duckdb.DuckDBPyConnection, table: str, key: str, columns: Sequence[str],
                rows: Sequence[Sequence], keep_if_null: set[str] = frozenset()) -> None:
    """`update table set column = value ... where key = row key` for many rows in one statement;
    each row is (key, *values in `columns` order)."""
    if not rows:
        return
    data = [[_plain(v) for v in column] for column in zip(*rows)]
    names = (key, *columns)
    source = ", ".join(f"unnest(?) as {name}" for name in names)
    sets = ", ".join(f"{c} = coalesce(v.{c}, {table}.{c})" if c in keep_if_null else f"{c} = v.{c}"
                     for c in columns)
    con.execute(f"update {table} set {sets} from (select {source}) v where {table}.{key} = v.{key}", data)


def delete_scores(con: duckdb.DuckDBPyConnection, column: str, values: list) -> None:
    """Scores whose `column` (sae_id or score_key) is in `values`, with every row hanging off them."""
    if not values:
        return
    ids = [r[0] for r in con.execute(f"select score_id from scores where {column} in (select unnest(?))",
                                     [values]).fetchall()]
    if not ids:
        return
    for table in SCORE_TABLES:
        con.execute(f"delete from {table} where score_id in (select unnest(?))", [ids])
    con.execute("delete from scores where score_id in (select unnest(?))", [ids])


def sae_row(job: "Job", suite: str, run_id: str) -> tuple:
    ref = job.sae
    t, s = ref.train, ref.sae
    return (job.sae_id, job.key, ref.source.label() if ref.source else "trained", suite, ref.model.name,
            job.label or None, ref.model.id, ref.model.revision, ref.model.dtype, ref.hook, ref.layer,
            s.arch if s else None, s.k if s and "k" in s.identity() else None, s.latents if s else None,
            t.lr if t else None, t.batch_size if t else None, t.ctx_len if t else None, t.tokens if t else None,
            t.seed if t else None, t.dataset.label() if t else None, json.dumps(ref.identity(), default=str),
            "pending", run_id)


def ready_row(job: "Job", result: "TrainResult") -> tuple:
    return (job.sae_id, *(getattr(result, c) for c in READY_COLUMNS))


def train_log_rows(job: "Job", rows: list["TrainLogRow"]) -> list[tuple]:
    return [(job.sae_id, *asdict(r).values()) for r in rows]


def score_rows(run_id: str, job: "Job", task: "ScoreTask", result: "ScoreResult", finished_at) -> dict[str, list]:
    """The rows one finished score puts in each table (`scores` and those hanging off it)."""
    key = task.key(job.key)
    score_id = key[:12]
    identity = task.identity()
    settings = {**identity, **({"resolved": result.resolved} if getattr(result, "resolved", None) else {})}
    return {
        "scores": [(score_id, key, job.sae_id, task.name, task.kind, task.dataset_label,
                    json.dumps(settings, default=str), identity["metric_version"], "done", run_id, finished_at,
                    result.seconds, result.dataset_fingerprint, result.device_name, result.warning,
                    result.loaded_dtype)],
        "metrics": [(score_id, metric, value, *result.intervals.get(metric, (None, None)))
                    for metric, value in result.metrics.items()],
        "metric_notes": [(score_id, metric, reason) for metric, reason in result.notes.items()],
        "latent_density": [(score_id, -1 if b.log10_low is None else i, b.log10_low, b.log10_high, b.latents)
                           for i, b in enumerate(result.density)],
        "absorption_letters": [(score_id, *asdict(row).values()) for row in result.letters],
        "sparse_probing": [(score_id, *asdict(row).values()) for row in result.probes],
    }


def gate_rows(score_id: str, policy: "GatePolicy", verdicts: list["GateResult"]) -> list[tuple]:
    return [(score_id, g.threshold.metric, g.threshold.op, g.threshold.min, g.threshold.max, g.value, g.passed,
             g.reason or None, policy.allow_fail) for g in verdicts]


GATE_COLUMNS = ("score_id", "metric", "op", "threshold_min", "threshold_max", "value", "passed", "reason",
                "allowed_to_fail")
CHILD_COLUMNS = {
    "metrics": ("score_id", "metric", "value", "ci_low", "ci_high"),
    "metric_notes": ("score_id", "metric", "reason"),
    "latent_density": ("score_id", "bin", "log10_low", "log10_high", "latents"),
    "absorption_letters": ("score_id", "letter", "probe_f1", "scored", "words", "mean_absorption",
                           "full_absorption", "split_features"),
    "sparse_probing": ("score_id", "task", "class", "inputs", "k", "accuracy", "train_texts", "test_texts"),
}
TRAIN_LOG_COLUMNS = ("sae_id", "step", "tokens", "loss", "fvu", "l0", "dead_fraction")
