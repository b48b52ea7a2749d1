"""The layer tables in one DuckDB query, so a file of 10,000 SAEs shows in well under a second.

`suite.report.load_report` builds every SAE's every metric in Python (seconds at that scale);
the layer table needs, per layer and SAE settings (seeds grouped as `suite.seeds` groups them),
five metrics of one eval as mean and sample standard deviation across seeds and one health
verdict (a gated metric passes when every seed passes it on every eval where it applies). DuckDB
computes exactly that. tests/test_tui_scale.py checks it equals the report's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suite.store import Store
from tui.cells import SETTING_NAMES

METRICS = ("loss_recovered", "explained_variance", "l0", "dead_fraction")
# LayerRow.settings_key positions (tui.cells.SETTING_NAMES) as saes columns; the seed is not an axis
SETTING_COLUMNS = ("hook", "arch", "k", "latents", "lr", "batch_size", "ctx_len", "train_tokens", None,
                   "train_dataset")
FAILURES_SHOWN = 5  # per model; the rest are counted

_KEYED = """
with keyed as (
    select a.*, md5(concat_ws('|', a.model, a.layer, a.hook, case when a.source <> 'trained' then 'imported:' || a.source
        else concat_ws('|', a.arch, coalesce(a.k::varchar, '-'), a.latents, a.lr, a.batch_size, a.ctx_len,
                       a.train_tokens, a.train_dataset) end))[:12] as gkey
    from saes a where a.status = 'done'
)"""

GROUPS = _KEYED + """,
vals as (
    select k.gkey, c.eval_name, m.metric, case when isnan(m.value) then null else m.value end as value
    from keyed k join current_scores c using (sae_id) join metrics m using (score_id)
    where (c.eval_name = $eval and m.metric in ('loss_recovered', 'explained_variance', 'l0', 'dead_fraction'))
       or (c.eval_name = 'absorption' and m.metric = 'absorption')
),
stats as (
    select gkey,
        avg(value) filter (where metric = 'loss_recovered' and eval_name = $eval) as loss_recovered,
        stddev_samp(value) filter (where metric = 'loss_recovered' and eval_name = $eval) as loss_recovered_sd,
        avg(value) filter (where metric = 'explained_variance') as explained_variance,
        stddev_samp(value) filter (where metric = 'explained_variance') as explained_variance_sd,
        avg(value) filter (where metric = 'l0') as l0,
        stddev_samp(value) filter (where metric = 'l0') as l0_sd,
        avg(value) filter (where metric = 'dead_fraction') as dead_fraction,
        stddev_samp(value) filter (where metric = 'dead_fraction') as dead_fraction_sd,
        avg(value) filter (where metric = 'absorption' and eval_name = 'absorption') as absorption,
        stddev_samp(value) filter (where metric = 'absorption' and eval_name = 'absorption') as absorption_sd
    from vals group by gkey
),
verdicts as (
    select gkey, count(*) filter (where ok) as passed, count(*) as total from (
        select k.gkey, g.metric, bool_and(g.passed) as ok
        from keyed k join current_scores c using (sae_id) join gates g using (score_id)
        where g.passed is not null group by all)
    group by gkey
),
groups as (
    select gkey, model, layer, hook, count(*) as seeds,
        list(sae_id order by seed nulls last, sae_id) as sae_ids,
        list(label order by seed nulls last, sae_id)[1] as label,
        list(source order by seed nulls last, sae_id)[1] as source,
        any_value(arch) as arch, any_value(k) as k, any_value(latents) as latents, any_value(lr) as lr,
        any_value(batch_size) as batch_size, any_value(ctx_len) as ctx_len,
        any_value(train_tokens) as train_tokens, any_value(train_dataset) as train_dataset,
        min(sae_id) as first_id
    from keyed group by gkey, model, layer, hook
)
select g.*, s.* exclude (gkey), coalesce(v.passed, 0) as passed, coalesce(v.total, 0) as total
from groups g left join stats s using (gkey) left join verdicts v using (gkey)
order by g.model, g.layer, g.hook, g.arch, g.k, g.latents, g.lr, g.first_id
"""

MODELS = """
select model, list(model_id order by layer, hook, arch, k, latents, lr, sae_id)[1] as model_id
from saes group by model order by model
"""

FAILURES = """
select model, layer, status || ': ' || coalesce(split_part(error, chr(10), 1), '') as what,
       layer as l, hook, arch, k, latents, lr, sae_id
from saes where status <> 'done'
union all
select a.model, a.layer, s.eval_name || ' not scored: ' || coalesce(split_part(s.error, chr(10), 1), ''),
       a.layer, a.hook, a.arch, a.k, a.latents, a.lr, a.sae_id
from scores s join saes a using (sae_id)
where a.status = 'done' and s.status = 'failed'
  and not exists (select 1 from current_scores c where c.sae_id = s.sae_id and c.eval_name = s.eval_name)
order by model, l, hook, arch, k, latents, lr, sae_id
"""

AXES = "select " + ", ".join(
    f"count(distinct coalesce({c}::varchar, '-'))" if c else "0" for c in SETTING_COLUMNS
) + ", count(*) from saes where status = 'done' and source = 'trained'"

EVALS = "select distinct eval_name from current_scores where eval_kind = 'core' order by 1"


@dataclass
class ModelLayers:
    name: str
    model_id: str
    groups: list[dict] = field(default_factory=list)  # one per layer and SAE settings
    failures: list[tuple[int, str]] = field(default_factory=list)  # (layer, what has no result and why)

    @property
    def healthy_count(self) -> int:
        return sum(g["passed"] == g["total"] for g in self.groups)

    @property
    def seeds(self) -> int:
        return max((g["seeds"] for g in self.groups), default=1)


@dataclass
class LayerTables:
    eval_names: list[str]
    eval_name: str | None
    models: list[ModelLayers]
    axes: list[int]  # SETTING_COLUMNS positions that vary (layer labels name them)

    @property
    def seeded(self) -> bool:
        return any(m.seeds > 1 for m in self.models)


def load_layer_tables(store: Store, eval_name: str | None) -> LayerTables:
    """Every model's layer table for `eval_name` (the first eval when None or gone); call it
    inside one read session so the queries see one state of the file."""
    eval_names = [name for (name,) in store.query(EVALS)]
    if eval_name not in eval_names:
        eval_name = eval_names[0] if eval_names else None
    models = {m["model"]: ModelLayers(m["model"], m["model_id"]) for m in store.query_dicts(MODELS)}
    for group in store.query_dicts(GROUPS.replace("$eval", "$1"), [eval_name]):
        models[group["model"]].groups.append(group)
    for model, layer, what, *_ in store.query(FAILURES):
        models[model].failures.append((layer, what))
    *distinct, count = store.query(AXES)[0]
    axes = [i for i, n in enumerate(distinct) if n > 1] if count >= 2 else []
    return LayerTables(eval_names, eval_name, list(models.values()), axes)


def group_label(group: dict, axes: list[int]) -> str:
    """As `tui.cells.layer_label` writes a LayerRow's label."""
    hook = f" {group['hook']}" if group["hook"] != "resid_post" else ""
    if group["label"]:
        return f"{group['layer']}{hook} ({group['label']})"
    if group["source"] != "trained":
        return f"{group['layer']}{hook}"
    parts = []
    for i in axes:
        column = SETTING_COLUMNS[i]
        if column in (None, "hook"):
            continue
        value = group[column]
        parts.append(f"{SETTING_NAMES[i]}={value:g}" if isinstance(value, float) else f"{SETTING_NAMES[i]}={value}")
    return " ".join([f"{group['layer']}{hook}", *parts])
