"""A results file as sae-bench wrote it at results schema 3 (before `runs.executor`,
`runs.threads`, `saes.loaded_dtype`, `scores.loaded_dtype` and `saes.wandb_url`): the input of
the 3 -> 4 migration tests. Made from a current results file by copying every row into the
schema-3 DDL (the columns schema 3 had), so its SAEs, checkpoints and scores are real and a
migrated copy can be resumed."""

from __future__ import annotations

from pathlib import Path

import duckdb

# The DDL and views of suite/store/schema.py at schema version 3 (commit 0bc526b), verbatim.
V3_TABLES = """
create table if not exists meta (key varchar primary key, value varchar);
create table if not exists runs (
    run_id varchar primary key,
    suite varchar not null,
    spec_path varchar,
    spec_toml varchar,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,           -- running | finished | failed | interrupted
    device varchar,                    -- as requested: auto | cpu | cuda | mps
    device_name varchar,               -- what ran: cpu, or the GPU's name
    host varchar,
    user_name varchar,
    pid integer,
    saes_planned integer,
    saes_to_train integer,
    scores_to_run integer,
    sae_bench_version varchar,
    python_version varchar,
    torch_version varchar,
    transformers_version varchar,
    datasets_version varchar,
    duckdb_version varchar,
    platform varchar
);
create table if not exists saes (
    sae_id varchar primary key,        -- first 12 hex digits of sae_key
    sae_key varchar unique not null,   -- sha256 of what determines the weights
    source varchar not null,           -- trained, or FORMAT:LOCATION of an imported SAE
    suite varchar not null,            -- the suite that last ran it
    model varchar not null,            -- the spec's alias the last run used (a label, not identity)
    label varchar,                     -- [saes.NAME] of an imported SAE
    model_id varchar not null,
    model_revision varchar,
    model_dtype varchar,
    model_sha varchar,                 -- hub commit, or sha256 of the weights (built-in/local)
    hook varchar not null,             -- resid_post | mlp_out | attn_out
    hook_name varchar,                 -- the module it reads, as SAELens names HF hooks
    layer integer not null,
    arch varchar,
    k integer,
    latents integer,
    d_model integer,
    lr double,
    batch_size integer,
    ctx_len integer,
    train_tokens bigint,
    seed integer,
    train_dataset varchar,
    train_fingerprint varchar,         -- sha256 of the training token stream consumed
    settings json not null,            -- the identity that was hashed into sae_key
    status varchar not null,           -- pending | running | done | failed | interrupted
    error varchar,
    run_id varchar,                    -- the run that last (re)started it
    started_at timestamp,
    finished_at timestamp,
    train_seconds double,
    tokens_per_second double,
    checkpoint_path varchar,
    weights_sha256 varchar,
    device_name varchar
);
create table if not exists scores (
    score_id varchar primary key,      -- first 12 hex digits of score_key
    score_key varchar unique not null, -- sha256 of (sae_key, eval settings, metric version)
    sae_id varchar not null,
    eval_name varchar not null,        -- [eval.NAME], or 'absorption'
    eval_kind varchar not null,        -- core | absorption
    eval_dataset varchar,
    eval_settings json not null,
    metric_version varchar not null,
    status varchar not null,           -- done | failed
    error varchar,
    run_id varchar,
    finished_at timestamp,
    seconds double,
    dataset_fingerprint varchar,       -- sha256 of the eval token stream consumed
    device_name varchar,
    warning varchar                    -- e.g. the dataset ended before the eval's budget
);
create table if not exists metrics (
    score_id varchar not null,
    metric varchar not null,
    value double,
    ci_low double,                     -- 95% bootstrap interval over eval sequences, where known
    ci_high double,
    primary key (score_id, metric)
);
create table if not exists metric_notes (
    score_id varchar not null,
    metric varchar not null,
    reason varchar not null,           -- why this metric has no value
    primary key (score_id, metric)
);
create table if not exists latent_density (
    score_id varchar not null,
    bin integer not null,              -- -1: never fired; else log10 bins of firing frequency
    log10_low double,
    log10_high double,
    latents integer not null,
    primary key (score_id, bin)
);
create table if not exists absorption_letters (
    score_id varchar not null,
    letter varchar not null,
    probe_f1 double,                   -- ground-truth probe F1 on its test words
    scored boolean not null,           -- included in the absorption mean
    words integer,
    mean_absorption double,
    full_absorption double,
    split_features integer,
    primary key (score_id, letter)
);
create table if not exists train_log (
    sae_id varchar not null,
    step integer not null,
    tokens bigint not null,
    loss double,
    fvu double,
    l0 double,
    dead_fraction double,
    primary key (sae_id, step)
);
create table if not exists gates (
    score_id varchar not null,
    metric varchar not null,
    op varchar not null,               -- '>=' | '<=' | 'between'
    threshold_min double,
    threshold_max double,
    value double,
    passed boolean,                    -- null: not applicable (see reason)
    reason varchar,
    allowed_to_fail boolean not null default false,
    primary key (score_id, metric)
);
"""

V3_VIEWS = """
create or replace view current_scores as
select s.* from scores s join saes a using (sae_id)
where s.status = 'done' and a.status = 'done' and s.metric_version in ('core-2', 'absorption-2')
qualify row_number() over (partition by s.sae_id, s.eval_name order by s.finished_at desc, s.score_id) = 1;

create or replace view health as
select a.sae_id, a.suite, a.model, a.label, a.model_id, a.hook, a.layer, a.arch, a.k, a.latents, a.lr, a.seed, c.eval_name, c.score_id,
    count(*) filter (where g.passed) as gates_passed,
    count(*) filter (where g.passed is not null) as gates_total,
    count(*) filter (where g.passed is null) as gates_not_applicable,
    list(g.metric order by g.metric) filter (where g.passed = false) as failed_gates,
    bool_or(g.allowed_to_fail) as allowed_to_fail
from saes a join current_scores c using (sae_id) join gates g using (score_id)
group by all;

create or replace view layer_summary as
select a.sae_id, a.suite, a.model, a.label, a.model_id, a.hook, a.layer, a.arch, a.k, a.latents, a.lr, a.seed, c.eval_name, c.eval_kind, c.score_id,
    max(m.value) filter (where m.metric = 'loss_recovered') as loss_recovered,
    max(m.value) filter (where m.metric = 'kl_score') as kl_score,
    max(m.value) filter (where m.metric = 'l0') as l0,
    max(m.value) filter (where m.metric = 'l1') as l1,
    max(m.value) filter (where m.metric = 'dead_fraction') as dead_fraction,
    max(m.value) filter (where m.metric = 'freq_over_1_percent') as freq_over_1_percent,
    max(m.value) filter (where m.metric = 'freq_over_10_percent') as freq_over_10_percent,
    max(m.value) filter (where m.metric = 'explained_variance') as explained_variance,
    max(m.value) filter (where m.metric = 'explained_variance_saebench') as explained_variance_saebench,
    max(m.value) filter (where m.metric = 'explained_variance_legacy') as explained_variance_legacy,
    max(m.value) filter (where m.metric = 'mse') as mse,
    max(m.value) filter (where m.metric = 'mse_saebench') as mse_saebench,
    max(m.value) filter (where m.metric = 'cossim') as cossim,
    max(m.value) filter (where m.metric = 'l2_ratio') as l2_ratio,
    max(m.value) filter (where m.metric = 'relative_reconstruction_bias') as relative_reconstruction_bias,
    max(m.value) filter (where m.metric = 'ce_clean') as ce_clean,
    max(m.value) filter (where m.metric = 'ce_zero') as ce_zero,
    max(m.value) filter (where m.metric = 'ce_sae') as ce_sae,
    max(m.value) filter (where m.metric = 'kl_zero') as kl_zero,
    max(m.value) filter (where m.metric = 'kl_sae') as kl_sae,
    max(m.value) filter (where m.metric = 'eval_tokens') as eval_tokens,
    max(m.value) filter (where m.metric = 'sparsity_eval_tokens') as sparsity_eval_tokens,
    max(m.value) filter (where m.metric = 'absorption') as absorption,
    max(m.value) filter (where m.metric = 'absorption_full') as absorption_full,
    max(m.value) filter (where m.metric = 'absorption_split_features') as absorption_split_features,
    max(m.value) filter (where m.metric = 'absorption_letters') as absorption_letters,
    max(m.ci_low) filter (where m.metric = 'loss_recovered') as loss_recovered_ci_low,
    max(m.ci_high) filter (where m.metric = 'loss_recovered') as loss_recovered_ci_high,
    max(m.ci_low) filter (where m.metric = 'kl_score') as kl_score_ci_low,
    max(m.ci_high) filter (where m.metric = 'kl_score') as kl_score_ci_high,
    max(m.ci_low) filter (where m.metric = 'l0') as l0_ci_low,
    max(m.ci_high) filter (where m.metric = 'l0') as l0_ci_high,
    max(m.ci_low) filter (where m.metric = 'explained_variance') as explained_variance_ci_low,
    max(m.ci_high) filter (where m.metric = 'explained_variance') as explained_variance_ci_high,
    max(m.ci_low) filter (where m.metric = 'mse') as mse_ci_low,
    max(m.ci_high) filter (where m.metric = 'mse') as mse_ci_high,
    max(m.ci_low) filter (where m.metric = 'cossim') as cossim_ci_low,
    max(m.ci_high) filter (where m.metric = 'cossim') as cossim_ci_high,
    max(m.ci_low) filter (where m.metric = 'ce_sae') as ce_sae_ci_low,
    max(m.ci_high) filter (where m.metric = 'ce_sae') as ce_sae_ci_high
from saes a join current_scores c using (sae_id) left join metrics m using (score_id)
group by all;
"""


def write_v3_store(source: Path, target: Path) -> dict[str, list[str]]:
    """`target`: a schema-3 file holding `source`'s rows (a current file), as schema 3 kept them.
    Returns the columns copied per table."""
    copied: dict[str, list[str]] = {}
    with duckdb.connect(str(target)) as con:
        con.execute(V3_TABLES)
        con.execute(f"attach '{source}' as src (read_only)")
        tables = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_catalog = current_database() and table_schema = 'main' "
                                            "and table_type = 'BASE TABLE'").fetchall()]
        for table in tables:
            columns = [r[0] for r in con.execute(
                "select column_name from information_schema.columns where table_catalog = current_database() "
                "and table_name = ? order by ordinal_position", [table]).fetchall()]
            names = ", ".join(columns)
            con.execute(f"insert into main.{table} ({names}) select {names} from src.main.{table}")
            copied[table] = columns
        con.execute("update meta set value = '3' where key = 'schema_version'")
        con.execute("detach src")
        con.execute(V3_VIEWS)
    return copied
