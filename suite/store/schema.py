"""The results schema (version 5): SAEs and their scores apart, provenance with every row.

`saes` holds one row per SAE, keyed by what determines its weights; `scores` one row per
(SAE, eval settings, metric-code version); metrics, notes, latent-density histograms, absorption
letters, sparse-probing probes and gates hang off a score. Views answer the common questions in one short query and
show only *current* scores: done, of this version's metric code, the latest per (SAE, eval).
Every column is documented in docs/schema.md (a test checks it).
"""

from __future__ import annotations

from suite.catalog import INTERVAL_METRICS, METRIC_NAMES
from suite.jobs import METRIC_VERSIONS

SCHEMA_VERSION = 5

TABLES = """
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
    platform varchar,
    executor varchar,                  -- local | ray: what ran the model groups
    threads integer                    -- torch intra-op threads of the process that trained/scored
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
    model_dtype varchar,               -- as the spec asked (auto | float32 | ...): part of sae_key
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
    device_name varchar,
    loaded_dtype varchar,              -- the torch dtype the model's weights were in (float32, bfloat16)
    wandb_url varchar                  -- the Weights & Biases run mirroring it, if any
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
    warning varchar,                   -- e.g. the dataset ended before the eval's budget
    loaded_dtype varchar               -- the torch dtype the model's weights were in
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
create table if not exists sparse_probing (
    score_id varchar not null,
    task varchar not null,             -- the [probing.NAME]
    class varchar not null,            -- the one-vs-rest task's positive class
    inputs varchar not null,           -- llm (model activations) | sae (latents)
    k integer,                         -- null: all dimensions, else the top k by class-mean difference
    accuracy double,                   -- test accuracy
    train_texts integer,
    test_texts integer
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


def views() -> str:
    versions = ", ".join(f"'{v}'" for v in METRIC_VERSIONS.values())
    pivot = ",\n    ".join(f"max(m.value) filter (where m.metric = '{name}') as {name}" for name in METRIC_NAMES)
    bounds = ",\n    ".join(
        f"max(m.ci_{side}) filter (where m.metric = '{name}') as {name}_ci_{side}"
        for name in INTERVAL_METRICS for side in ("low", "high"))
    sae_columns = "a.sae_id, a.suite, a.model, a.label, a.model_id, a.hook, a.layer, a.arch, a.k, a.latents, a.lr, a.seed"
    return f"""
create or replace view current_scores as
select s.* from scores s join saes a using (sae_id)
where s.status = 'done' and a.status = 'done' and s.metric_version in ({versions})
qualify row_number() over (partition by s.sae_id, s.eval_name order by s.finished_at desc, s.score_id) = 1;

create or replace view health as
select {sae_columns}, c.eval_name, c.score_id,
    count(*) filter (where g.passed) as gates_passed,
    count(*) filter (where g.passed is not null) as gates_total,
    count(*) filter (where g.passed is null) as gates_not_applicable,
    list(g.metric order by g.metric) filter (where g.passed = false) as failed_gates,
    bool_or(g.allowed_to_fail) as allowed_to_fail
from saes a join current_scores c using (sae_id) join gates g using (score_id)
group by all;

create or replace view layer_summary as
select {sae_columns}, c.eval_name, c.eval_kind, c.score_id,
    {pivot},
    {bounds}
from saes a join current_scores c using (sae_id) left join metrics m using (score_id)
group by all;
"""
