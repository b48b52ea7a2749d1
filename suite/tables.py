"""Rich tables of a run's results, one per model, read back from the store (never from memory),
so what is printed is exactly what a SQL query over the file returns. Fitted to the width
(suite.fit): a narrow terminal or a pipe gets whole headers and values, or records.

Seeds are aggregated as the report aggregates them (suite.seeds): one row per layer, SAE
settings and eval, each number the across-seed mean ± the sample standard deviation, and one
health verdict per layer (`HEALTH_RULE`), shown on the layer's first row.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

from suite.fit import Cell, Col, fit_table
from suite.report import load_report
from suite.report_numbers import num_spread, pct_spread
from suite.seeds import LayerGroup, gate_verdict, group_seeds, has_seed_axis
from suite.store import Store

_NOT_DONE_SQL = """
select sae_id, model, model_id, layer, hook, arch, k, latents, lr, seed, status, error, label
from saes where sae_id in (select unnest(?)) and status <> 'done'
order by model, layer, hook, k, latents, lr, seed, sae_id
"""


def _verdict(group: LayerGroup, evals: set[str] | None = None) -> Text:
    """n/N gated metrics passed on every eval (of `evals`, default all) and every seed."""
    gates = [g for row in group.rows for g in row.gates if evals is None or g.eval_name in evals]
    metrics, passed = gate_verdict(gates)
    if not metrics:
        return Text("-")
    total = len(metrics)
    colour = "green" if len(passed) == total else ("yellow" if len(passed) * 2 >= total else "red")
    text = Text(f"{len(passed)}/{total}", style=colour)
    failed = [m for m in metrics if m not in passed]
    if failed:
        text.append(f" ✗ {', '.join(failed)}", style="dim")
    not_applicable = len({(g.eval_name, g.metric) for g in gates if g.passed is None})
    if not_applicable:
        text.append(f" ({not_applicable} n/a)", style="dim")
    if group.has_seeds and evals is None:
        text.append(f" seeds {group.healthy_seeds}/{len(group.rows)}", style="dim")
    return text


def _settings_text(hook: str, arch: str | None, k: int | None, latents: int | None, lr: float | None,
                   label: str | None) -> str:
    where = f"{hook} " if hook != "resid_post" else ""
    if lr is None:  # imported
        return f"{where}{label or 'imported'} ({arch} n={latents})"
    k_text = f" k={k}" if k is not None else ""
    return f"{where}{arch}{k_text} n={latents} lr={lr:g}"


def _group_settings(group: LayerGroup) -> str:
    row = group.first
    return _settings_text(row.hook, row.arch, row.k, row.latents, row.lr, row.label_text)


def _seeds(group: LayerGroup) -> str:
    return ",".join("-" if s is None else str(s) for s in group.seeds)


_METRICS = (Col("Loss recovered", whole=True, justify="right"), Col("KL score", whole=True, justify="right"),
            Col("L0", whole=True, justify="right"), Col("Dead %", whole=True, justify="right"),
            Col("Expl. var.", whole=True, justify="right"), Col("Absorption", whole=True, justify="right"),
            Col("Health"))
_CORE = (("loss_recovered", True, 2), ("kl_score", False, 3), ("l0", False, 2), ("dead_fraction", True, 2),
         ("explained_variance", False, 3), ("absorption", False, 3))  # (metric, as percent, digits)

_PROBING = (Col("SAE top-1", whole=True, justify="right"), Col("LLM top-1", whole=True, justify="right"),
            Col("SAE acc.", whole=True, justify="right"), Col("LLM acc.", whole=True, justify="right"), Col("Health"))
_PROBE_METRICS = ("sae_top_1_test_accuracy", "llm_top_1_test_accuracy", "sae_test_accuracy", "llm_test_accuracy")


def _value(group: LayerGroup, eval_name: str, metric: str, as_percent: bool, digits: int) -> str:
    stat = group.stat(eval_name, metric)
    return pct_spread(stat) if as_percent else num_spread(stat, digits)


def model_tables(store: Store, sae_ids: list[str], width: int = 200) -> list[RenderableType]:
    """Per model (titled with its alias and model id), fitted to `width` (suite.fit): a table of
    the core and absorption metrics, then, where the spec has sparse-probing tasks, one of their
    test accuracies (SAEBench's k-sparse probing: top-1 latent, and all of them; the model's own
    activations beside). Seeds aggregated (module docstring); where SAE settings other than the
    seed vary, each row names its settings (and its SAE id when the grid has no seed axis)."""
    wanted = set(sae_ids)
    report = load_report(store)
    not_done = store.query_dicts(_NOT_DONE_SQL, [sae_ids])
    by_model = {name: group_seeds([r for r in m.rows if r.sae_id in wanted]) for name, m in report.models.items()}
    titles = {name: f"{name} ({m.model_id})" for name, m in report.models.items()}
    groups = [g for gs in by_model.values() for g in gs]
    seeded = has_seed_axis(groups) or len({r["seed"] for r in not_done} | {s for g in groups for s in g.seeds}) > 1
    settings = {(g.hook, g.first.arch, g.first.k, g.first.latents, g.first.lr, g.first.label_text or None)
                for g in groups} | {(r["hook"], r["arch"], r["k"], r["latents"], r["lr"], r["label"]) for r in not_done}
    settings_vary = len(settings) > 1
    with_ids = settings_vary and not seeded
    lead = [Col("Layer", whole=True, justify="right")]
    lead += [Col("Seeds", whole=True)] if seeded else []
    lead += ([Col("SAE", whole=True)] if with_ids else []) + ([Col("Settings")] if settings_vary else [])
    core_cols = [*lead, Col("Eval", whole=True), *_METRICS]
    probe_cols = [*lead, Col("Probing task", whole=True), *_PROBING]
    tables: list[RenderableType] = []
    for model in report.models:
        core_rows: list[list[Cell]] = []
        probe_rows: list[list[Cell]] = []
        for group in by_model[model]:
            head: list[Cell] = [str(group.layer)] + ([_seeds(group)] if seeded else [])
            head += ([group.first.sae_id] if with_ids else []) + ([_group_settings(group)] if settings_vary else [])
            names = group.eval_names()
            probing = [n for n in names if n in report.probing_names]
            core = [n for n in names if n not in probing and n != "absorption"] + (
                ["absorption"] if "absorption" in names else [])
            if not names:
                core_rows.append([*head, Text("done", style="red"), "", "", "", "", "", "", Text("no current score")])
            for i, name in enumerate(core):
                core_rows.append([*head, name, *(_value(group, name, m, p, d) for m, p, d in _CORE),
                                  _verdict(group) if i == 0 else Text("")])
            for name in probing:
                probe_rows.append([*head, name, *(_value(group, name, m, False, 3) for m in _PROBE_METRICS),
                                   _verdict(group, {name})])
        core_rows += [_not_done(row, seeded, with_ids, settings_vary) for row in not_done if row["model"] == model]
        if core_rows:
            tables.append(fit_table(core_cols, core_rows, width, title=titles[model]))
        if probe_rows:
            cols, cells = _without_empty_health(probe_cols, probe_rows)
            tables.append(fit_table(cols, cells, width, title=f"{titles[model]}: sparse probing test accuracy"))
    return tables


def _not_done(row: dict, seeded: bool, with_ids: bool, settings_vary: bool) -> list[Cell]:
    """An SAE that did not finish (failed, or still pending): one row of its own, with its error."""
    detail = (row["error"] or "").splitlines()[0] if row["error"] else "no current score"
    head: list[Cell] = [str(row["layer"])] + ([str(row["seed"])] if seeded else [])
    head += ([row["sae_id"]] if with_ids else []) + ([_settings_text(
        row["hook"], row["arch"], row["k"], row["latents"], row["lr"], row["label"])] if settings_vary else [])
    return [*head, Text(row["status"], style="red"), "", "", "", "", "", "", Text(detail)]


def _without_empty_health(cols: list[Col], rows: list[list[Cell]]) -> tuple[list[Col], list[list[Cell]]]:
    """The Health column is left out where no row has a gate (no threshold on a probing metric)."""
    if all(str(row[-1]) == "-" for row in rows):
        return cols[:-1], [row[:-1] for row in rows]
    return cols, rows
