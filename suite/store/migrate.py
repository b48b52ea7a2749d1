"""Migration of results files written by earlier sae-bench versions: a chain of steps.

`STEPS[n]` turns a schema-n file into a schema-(n+1) one inside the caller's transaction;
`migrate` runs every step from the file's version to `SCHEMA_VERSION` in one transaction after a
byte copy of the file, so a crash leaves the original intact, and the copy stays beside it.
The views are dropped first and created once at the end from the current code. A new schema
version adds one step here (and bumps `SCHEMA_VERSION` in `suite.store.schema`
and docs/schema.md). Steps only ever add (tables, columns) with `if not exists`, so an earlier
step that creates tables from the current DDL leaves later steps nothing to redo.

Schema 2 (one `jobs` table: an SAE and its scores under one key that hashed the model alias and
the eval set, and scores computed before SAEBench's conventions) becomes schema 3:
- each job becomes an SAE under its new key (what determines its weights), keeping its
  checkpoint, training curve and timings, so nothing is retrained;
- its metrics become scores of metric version `core-1`: kept as history, never shown as current
  (the views and reports show current metric versions only), so the next run rescores the SAE
  under SAEBench's conventions instead of silently mixing conventions;
- its gates are dropped (they judged the old numbers); the next run gates the new scores.

Schema 3 becomes schema 4 by adding columns: `runs.executor` and `runs.threads` (unknown, null,
for earlier runs), `saes.loaded_dtype` and `scores.loaded_dtype` (the torch dtype the model ran
in: from `model_dtype` where the spec named one, else by the rule the loader has used since
schema 3, bfloat16 on a GPU and float32 elsewhere), and `saes.wandb_url`. Keys are unchanged,
so a migrated file resumes without retraining or rescoring.

Schema 4 becomes schema 5 by adding the `sparse_probing` table (one row per probe of a
sparse-probing score); no earlier file has such scores, so it starts empty.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import duckdb

from suite.jobs import SAE_KEY_VERSION, digest
from suite.store.schema import SCHEMA_VERSION, TABLES, views
from suite.store.rows import CHILD_COLUMNS, TRAIN_LOG_COLUMNS, insert_rows

if TYPE_CHECKING:
    from suite.store.store import Store

LEGACY_CORE_VERSION = "core-1"
_TOPK_FIELDS = ("arch", "latents", "k", "aux_k", "aux_coef", "dead_tokens")
VIEWS = ("health", "layer_summary", "current_scores")  # every view any version created


def backup_path(store: "Store", found: int):
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return store.path.with_name(f"{store.path.name}.schema{found}-{stamp}.bak")


def migrate(store: "Store") -> str:
    """Migrate `store`'s file to the current schema in place; returns the backup's path."""
    from suite.store.store import StoreError

    found = store.schema_version()
    if found == SCHEMA_VERSION:
        return ""
    if found is None:
        raise StoreError(f"{store.path} is an empty DuckDB database: there is nothing to migrate")
    if found not in STEPS:
        raise StoreError(f"{store.path} has results schema version {found}, which this sae-bench cannot migrate "
                         f"(it migrates versions {', '.join(map(str, sorted(STEPS)))}): run its spec into a new "
                         f"file with --db")
    backup = backup_path(store, found)
    shutil.copy2(store.path, backup)
    wal = store.path.with_name(store.path.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, backup.with_name(backup.name + ".wal"))
    with store.transaction() as con:
        for view in VIEWS:
            con.execute(f"drop view if exists {view}")
        for version in range(found, SCHEMA_VERSION):
            STEPS[version](con)
            con.execute("insert or replace into meta values ('schema_version', ?)", [str(version + 1)])
        con.execute("insert or replace into meta values ('migrated_from', ?)", [str(found)])
        con.execute(views())
    return str(backup)


def what_is_kept(found: int) -> str:
    """One sentence for the user on what a migration from schema `found` keeps."""
    if found <= 2:
        return ("Its SAEs are kept; their scores are history until its spec is run again, which rescores them under "
                "SAEBench's conventions without retraining.")
    return "Its SAEs and scores are kept as they were: running its spec again recomputes nothing that was done."


def _rows(con, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def sae_identity_from_v2(settings: dict[str, Any]) -> dict[str, Any]:
    """The schema-3 identity of a schema-2 job (a TopK SAE on the residual stream)."""
    model = settings["model"]
    return {
        "version": SAE_KEY_VERSION,
        "model": {"id": model["id"], "revision": model.get("revision"), "dtype": model.get("dtype", "auto")},
        "hook": "resid_post",
        "layer": settings["layer"],
        "train": settings["train"],
        "sae": {name: settings["sae"][name] for name in _TOPK_FIELDS if name in settings["sae"]},
    }


def _from_v2(con) -> None:
    jobs = _rows(con, "select * from jobs")
    metrics = _rows(con, "select * from metrics")
    notes = _rows(con, "select * from metric_notes")
    train_log = _rows(con, "select * from train_log")
    runs = _rows(con, "select * from runs")
    for table in ("gates", "metric_notes", "metrics", "train_log", "jobs", "runs"):
        con.execute(f"drop table if exists {table}")
    con.execute(TABLES)
    for run in runs:
        con.execute(
            """insert into runs (run_id, suite, spec_path, spec_toml, started_at, finished_at, status, device, host,
               user_name, saes_planned, saes_to_train) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [run["run_id"], run["suite"], run["spec_path"], run["spec_toml"], run["started_at"], run["finished_at"],
             "interrupted" if run["status"] == "running" else run["status"], run["device"], run["host"],
             run["user_name"], run["jobs_planned"], (run["jobs_planned"] or 0) - (run["jobs_skipped"] or 0)])
    sae_ids: dict[str, str] = {}
    scores: dict[tuple[str, str], str] = {}
    for job in jobs:
        settings = json.loads(job["settings"])
        identity = sae_identity_from_v2(settings)
        key = digest(identity)
        sae_ids[job["job_id"]] = key[:12]
        status = {"running": "interrupted", "pending": "interrupted"}.get(job["status"], job["status"])
        con.execute(
            """insert into saes (sae_id, sae_key, source, suite, model, model_id, model_revision,
               model_dtype, hook, hook_name, layer, arch, k, latents, lr, batch_size, ctx_len, train_tokens, seed,
               train_dataset, settings, status, error, run_id, started_at, finished_at, train_seconds,
               tokens_per_second, checkpoint_path)
               values (?, ?, 'trained', ?, ?, ?, ?, ?, 'resid_post', null, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                       ?, ?, ?, ?)""",
            [key[:12], key, job["suite"], job["model"], job["model_id"], identity["model"]["revision"],
             identity["model"]["dtype"], job["layer"], job["arch"], job["k"], job["latents"], job["lr"],
             job["batch_size"], job["ctx_len"], job["train_tokens"], job["seed"], job["train_dataset"],
             json.dumps(identity), status, job["error"], job["run_id"], job["started_at"], job["finished_at"],
             job["train_seconds"], job["tokens_per_second"], job["checkpoint_path"]])
        evals = {e["name"]: e for e in settings.get("evals", [])}
        for eval_name in sorted({m["eval_name"] for m in metrics if m["job_id"] == job["job_id"]}):
            score_key = digest({"migrated_v2_job": job["job_key"], "eval": eval_name})
            scores[(job["job_id"], eval_name)] = score_key[:12]
            con.execute(
                """insert into scores (score_id, score_key, sae_id, eval_name, eval_kind, eval_dataset, eval_settings,
                   metric_version, status, run_id, finished_at) values (?, ?, ?, ?, 'core', ?, ?, ?, 'done', ?, ?)""",
                [score_key[:12], score_key, key[:12], eval_name,
                 _dataset_label(evals.get(eval_name, {}).get("dataset")),
                 json.dumps({"migrated_from_schema": 2, "settings": evals.get(eval_name)}), LEGACY_CORE_VERSION,
                 job["run_id"], job["finished_at"]])
    insert_rows(con, "metrics", CHILD_COLUMNS["metrics"], replace=True, rows=
                    [[scores[(m["job_id"], m["eval_name"])], m["metric"], m["value"], m["ci_low"], m["ci_high"]]
                     for m in metrics if (m["job_id"], m["eval_name"]) in scores])
    insert_rows(con, "metric_notes", CHILD_COLUMNS["metric_notes"], replace=True, rows=
                    [[scores[(n["job_id"], n["eval_name"])], n["metric"], n["reason"]]
                     for n in notes if (n["job_id"], n["eval_name"]) in scores])
    insert_rows(con, "train_log", TRAIN_LOG_COLUMNS, replace=True, rows=
                    [[sae_ids[r["job_id"]], r["step"], r["tokens"], r["loss"], r["fvu"], r["l0"], r["dead_fraction"]]
                     for r in train_log if r["job_id"] in sae_ids])


def _dataset_label(dataset: dict | None) -> str | None:
    if not dataset:
        return None
    return ":".join(p for p in (dataset.get("path"), dataset.get("name"), dataset.get("split")) if p)


def _from_v3(con: duckdb.DuckDBPyConnection) -> None:
    for table, column, kind in (("runs", "executor", "varchar"), ("runs", "threads", "integer"),
                                ("saes", "loaded_dtype", "varchar"), ("saes", "wandb_url", "varchar"),
                                ("scores", "loaded_dtype", "varchar")):
        con.execute(f"alter table {table} add column if not exists {column} {kind}")
    con.execute(f"update saes set loaded_dtype = {_loaded_dtype('model_dtype', 'device_name')} "
                f"where loaded_dtype is null")
    con.execute(f"update scores set loaded_dtype = {_loaded_dtype('a.model_dtype', 'scores.device_name')} "
                f"from saes a where a.sae_id = scores.sae_id and scores.loaded_dtype is null")


def _loaded_dtype(asked: str, device_name: str) -> str:
    """What `harness.models.pick_dtype` made of the spec's word on the device that ran (null where
    the device is unknown)."""
    return (f"case when {asked} in ('float32', 'bfloat16', 'float16') then {asked} "
            f"when coalesce({asked}, 'auto') <> 'auto' then null "
            f"when {device_name} in ('cpu', 'mps') then 'float32' "
            f"when {device_name} is not null then 'bfloat16' end")


def _from_v4(con: duckdb.DuckDBPyConnection) -> None:
    start = TABLES.index("create table if not exists sparse_probing")
    con.execute(TABLES[start:TABLES.index("\n);", start) + 3])


STEPS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {2: _from_v2, 3: _from_v3, 4: _from_v4}
