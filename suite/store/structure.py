"""What a results file of each schema version holds: its tables and their columns.

A file is ours when `meta` says a version *and* it holds that version's tables and columns (and,
at the current version, its views), so a foreign or damaged DuckDB file with a copied `meta` row
is refused in one line by every reader and by `run`, instead of failing later on a missing
table. Extra tables or columns are allowed (a user's own views, say). The check is one query on
DuckDB's catalog, done when a file is identified.

Each version is frozen here as it shipped; a schema bump adds its entry (a test checks that the
entry of the current version is what `suite.store.schema.TABLES` creates).
"""

from __future__ import annotations

import re

import duckdb

from suite.store.schema import SCHEMA_VERSION, views

_V3 = {
    "absorption_letters": "score_id letter probe_f1 scored words mean_absorption full_absorption split_features",
    "gates": "score_id metric op threshold_min threshold_max value passed reason allowed_to_fail",
    "latent_density": "score_id bin log10_low log10_high latents",
    "meta": "key value",
    "metric_notes": "score_id metric reason",
    "metrics": "score_id metric value ci_low ci_high",
    "runs": "run_id suite spec_path spec_toml started_at finished_at status device device_name host user_name pid "
            "saes_planned saes_to_train scores_to_run sae_bench_version python_version torch_version "
            "transformers_version datasets_version duckdb_version platform",
    "saes": "sae_id sae_key source suite model label model_id model_revision model_dtype model_sha hook hook_name "
            "layer arch k latents d_model lr batch_size ctx_len train_tokens seed train_dataset train_fingerprint "
            "settings status error run_id started_at finished_at train_seconds tokens_per_second checkpoint_path "
            "weights_sha256 device_name",
    "scores": "score_id score_key sae_id eval_name eval_kind eval_dataset eval_settings metric_version status error "
              "run_id finished_at seconds dataset_fingerprint device_name warning",
    "train_log": "sae_id step tokens loss fvu l0 dead_fraction",
}
_V4_ADDED = {"runs": "executor threads", "saes": "loaded_dtype wandb_url", "scores": "loaded_dtype"}

FROZEN: dict[int, dict[str, str]] = {
    2: {
        "gates": "job_id eval_name metric op threshold_min threshold_max value passed reason allowed_to_fail",
        "jobs": "job_id job_key run_id suite model model_id layer arch k latents lr batch_size ctx_len train_tokens "
                "seed train_dataset settings status error started_at finished_at train_seconds tokens_per_second "
                "checkpoint_path",
        "meta": "key value",
        "metric_notes": "job_id eval_name metric reason",
        "metrics": "job_id eval_name metric value ci_low ci_high",
        "runs": "run_id suite spec_path spec_toml started_at finished_at status device host user_name jobs_planned "
                "jobs_skipped",
        "train_log": "job_id step tokens loss fvu l0 dead_fraction",
    },
    3: _V3,
    4: {table: f"{columns} {_V4_ADDED[table]}" if table in _V4_ADDED else columns for table, columns in _V3.items()},
}
FROZEN[5] = {**FROZEN[4], "sparse_probing": "score_id task class inputs k accuracy train_texts test_texts"}


def expected(version: int) -> dict[str, set[str]]:
    """Table -> columns a file of `version` must hold ({} for a version not frozen here)."""
    return {table: set(columns.split()) for table, columns in FROZEN.get(version, {}).items()}


def current_views() -> set[str]:
    return set(re.findall(r"create or replace view (\w+)", views()))


def missing(con: duckdb.DuckDBPyConnection, version: int) -> list[str]:
    """What a file claiming `version` lacks: `table`, `table.column` or `view NAME`; [] if whole."""
    present: dict[str, set[str]] = {}
    for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_catalog = current_database() and table_schema = 'main'").fetchall():
        present.setdefault(table, set()).add(column)
    lacking = []
    for table, columns in sorted(expected(version).items()):
        if table not in present:
            lacking.append(table)
        else:
            lacking.extend(f"{table}.{c}" for c in sorted(columns - present[table]))
    if version == SCHEMA_VERSION:
        lacking.extend(f"view {v}" for v in sorted(current_views() - present.keys()))
    return lacking
