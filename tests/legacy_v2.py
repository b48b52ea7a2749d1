"""A results file as sae-bench 0.1 (results schema 2) wrote it, with SAE checkpoints in that
version's layout, built from a spec: the input of the migration tests."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import duckdb
import torch
from safetensors.torch import save_file

from harness.saes import TopKSae
from suite.grid import score_tasks, trained_saes
from suite.spec import parse_spec

# The DDL of suite/store.py at schema version 2 (commit 1d69426), verbatim.
V2_SCHEMA = """
create table if not exists meta (key varchar primary key, value varchar);
create table if not exists runs (
    run_id varchar primary key,
    suite varchar not null,
    spec_path varchar,
    spec_toml varchar,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,          -- running | finished | failed | interrupted
    device varchar,
    host varchar,
    user_name varchar,
    jobs_planned integer,
    jobs_skipped integer
);
create table if not exists jobs (
    job_id varchar primary key,       -- first 12 hex digits of job_key
    job_key varchar unique not null,  -- sha256 of the normalised settings
    run_id varchar not null,          -- the run that last (re)started it
    suite varchar not null,
    model varchar not null,           -- the spec's alias, e.g. base
    model_id varchar not null,        -- hub id, path or builtin:NAME
    layer integer not null,
    arch varchar not null,
    k integer not null,
    latents integer not null,
    lr double not null,
    batch_size integer not null,
    ctx_len integer not null,
    train_tokens bigint not null,
    seed integer not null,
    train_dataset varchar not null,
    settings json not null,
    status varchar not null,          -- pending | running | done | failed
    error varchar,
    started_at timestamp,
    finished_at timestamp,
    train_seconds double,
    tokens_per_second double,
    checkpoint_path varchar
);
create table if not exists metrics (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    value double,
    ci_low double,                    -- 95% bootstrap interval over eval sequences, where known
    ci_high double,
    primary key (job_id, eval_name, metric)
);
create table if not exists metric_notes (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    reason varchar not null,          -- why this metric has no value
    primary key (job_id, eval_name, metric)
);
create table if not exists train_log (
    job_id varchar not null,
    step integer not null,
    tokens bigint not null,
    loss double,
    fvu double,
    l0 double,
    dead_fraction double,
    primary key (job_id, step)
);
create table if not exists gates (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    op varchar not null,              -- '>=' | '<=' | 'between'
    threshold_min double,
    threshold_max double,
    value double,
    passed boolean,                   -- null: not applicable (see reason)
    reason varchar,
    allowed_to_fail boolean not null default false,  -- the spec tolerates this job's failures
    primary key (job_id, eval_name, metric)
);
"""


def write_v2_store(db: Path, spec_text: str, checkpoints: Path) -> list[dict]:
    """One done job per SAE of the spec, with metrics, a gate and a training curve; returns the
    jobs as written. Checkpoints: `config.json` + `sae.safetensors` with `W_enc [latents, d]`."""
    spec = parse_spec(spec_text, "v2.toml")
    evals = [t.settings for t in score_tasks(spec) if t.kind == "core"]
    jobs = []
    with duckdb.connect(str(db)) as con:
        con.execute(V2_SCHEMA)
        con.execute("insert into meta values ('schema_version', '2')")
        con.execute("insert into runs values ('20250101-000000-abcdef', ?, 'v2.toml', ?, '2025-01-01 00:00', "
                    "'2025-01-01 00:10', 'finished', 'cpu', 'host', 'me', ?, 0)", [spec.name, spec_text,
                                                                                  len(trained_saes(spec))])
        for index, declared in enumerate(trained_saes(spec)):
            ref = declared.ref
            identity = {"version": 1, "model": {"name": ref.model.name, "id": ref.model.id,
                                                "revision": ref.model.revision, "dtype": ref.model.dtype,
                                                "trust_remote_code": ref.model.trust_remote_code},
                        "layer": ref.layer, "train": asdict(ref.train), "sae": asdict(ref.sae),
                        "evals": sorted(({"name": e.name, "dataset": asdict(e.dataset), "tokens": e.tokens}
                                         for e in evals), key=lambda e: e["name"]), "absorption": None}
            job_key = f"{index:02d}" + "ab" * 31
            job_id = job_key[:12]
            directory = checkpoints / job_id
            directory.mkdir(parents=True)
            d_model = 64
            sae = TopKSae(d_model, ref.sae, torch.Generator().manual_seed(index))
            tensors = {name: p.detach().clone() for name, p in sae.state_dict().items()}
            tensors["W_enc"] = tensors["W_enc"].T.contiguous()  # schema 2 kept [latents, d]
            save_file(tensors, directory / "sae.safetensors")
            (directory / "config.json").write_text(json.dumps({"d_model": d_model, "sae": asdict(ref.sae),
                                                                "layer": ref.layer, "job_key": job_key}))
            t, s = ref.train, ref.sae
            con.execute("insert into jobs values (?, ?, '20250101-000000-abcdef', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                        "?, ?, ?, 'done', null, '2025-01-01 00:01', '2025-01-01 00:05', 12.5, 1000.0, ?)",
                        [job_id, job_key, spec.name, ref.model.name, ref.model.id, ref.layer, s.arch, s.k, s.latents,
                         t.lr, t.batch_size, t.ctx_len, t.tokens, t.seed, t.dataset.label(), json.dumps(identity),
                         str(directory)])
            for e in evals:
                con.execute("insert into metrics values (?, ?, 'loss_recovered', 0.5, 0.4, 0.6)", [job_id, e.name])
                con.execute("insert into gates values (?, ?, 'loss_recovered', '>=', 0.6, null, 0.5, false, null, "
                            "false)", [job_id, e.name])
            con.execute("insert into train_log values (?, 1, 512, 1.0, 1.0, 24.0, 0.0), (?, 5, 2560, 0.5, 0.5, "
                        "24.0, 0.0)", [job_id, job_id])
            jobs.append({"job_id": job_id, "layer": ref.layer, "model": ref.model.name, "new_key": ref.key})
    return jobs
