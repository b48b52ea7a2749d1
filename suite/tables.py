"""Rich tables of a run's results, one per model, read back from the store (never from memory),
so what is printed is exactly what a SQL query over the file returns. Fitted to the width
(suite.fit): a narrow terminal or a pipe gets whole headers and values, or records."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

from suite.fit import Cell, Col, fit_table
from suite.report import num, pct
from suite.store import Store

_ROWS_SQL = """
select a.sae_id, a.model, a.model_id, a.layer, a.hook, a.arch, a.k, a.latents, a.lr, a.seed, a.status, a.error,
       a.label,
       s.eval_name, s.eval_kind, s.loss_recovered, s.kl_score, s.l0, s.dead_fraction, s.explained_variance,
       s.absorption, s.sae_top_1_test_accuracy, s.llm_top_1_test_accuracy, s.sae_test_accuracy, s.llm_test_accuracy,
       h.gates_passed, h.gates_total, h.gates_not_applicable, h.failed_gates
from saes a
left join layer_summary s using (sae_id)
left join health h on h.score_id = s.score_id
where a.sae_id in (select unnest(?))
order by a.model, a.layer, a.hook, a.k, a.latents, a.lr, a.seed, a.sae_id, s.eval_kind, s.eval_name
"""


def _health(row: dict) -> Text:
    passed, total = row["gates_passed"], row["gates_total"]
    if total is None:
        return Text("-")
    colour = "green" if passed == total else ("yellow" if passed * 2 >= total else "red")
    text = Text(f"{passed}/{total}", style=colour)
    if row["failed_gates"]:
        text.append(f" ✗ {', '.join(row['failed_gates'])}", style="dim")
    if row["gates_not_applicable"]:
        text.append(f" ({row['gates_not_applicable']} n/a)", style="dim")
    return text


def _settings(row: dict, seeds_vary: bool) -> str:
    hook = f"{row['hook']} " if row["hook"] != "resid_post" else ""
    if row["lr"] is None:  # imported
        return f"{hook}{row['label'] or 'imported'} ({row['arch']} n={row['latents']})"
    k = f" k={row['k']}" if row["k"] is not None else ""
    seed = f" seed={row['seed']}" if seeds_vary else ""
    return f"{hook}{row['arch']}{k} n={row['latents']} lr={row['lr']:g}{seed}"


_METRICS = (Col("Loss recovered", whole=True, justify="right"), Col("KL score", whole=True, justify="right"),
            Col("L0", whole=True, justify="right"), Col("Dead %", whole=True, justify="right"),
            Col("Expl. var.", whole=True, justify="right"), Col("Absorption", whole=True, justify="right"),
            Col("Health"))


_PROBING = (Col("SAE top-1", whole=True, justify="right"), Col("LLM top-1", whole=True, justify="right"),
            Col("SAE acc.", whole=True, justify="right"), Col("LLM acc.", whole=True, justify="right"), Col("Health"))


def model_tables(store: Store, sae_ids: list[str], width: int = 200) -> list[RenderableType]:
    """Per model (titled with its alias and model id), fitted to `width` (suite.fit): a table of
    the core and absorption metrics, then, where the spec has sparse-probing tasks, one of their
    test accuracies (SAEBench's k-sparse probing: top-1 latent, and all of them; the model's own
    activations beside). Where SAE settings vary, each row names its SAE by id and settings."""
    rows = store.query_dicts(_ROWS_SQL, [sae_ids])
    settings_vary = len({(r["hook"], r["arch"], r["k"], r["latents"], r["lr"], r["seed"]) for r in rows}) > 1
    seeds_vary = len({r["seed"] for r in rows}) > 1
    lead = [Col("Layer", whole=True, justify="right")]
    if settings_vary:
        lead += [Col("SAE", whole=True), Col("Settings")]
    core_cols = [*lead, Col("Eval", whole=True), *_METRICS]
    probe_cols = [*lead, Col("Probing task", whole=True), *_PROBING]
    core: dict[str, tuple[str, list[list[Cell]]]] = {}
    probing: dict[str, list[list[Cell]]] = {}
    for row in rows:
        title, cells = core.setdefault(row["model"], (f"{row['model']} ({row['model_id']})", []))
        sae: list[Cell] = [str(row["layer"]), *([row["sae_id"], _settings(row, seeds_vary)] if settings_vary else [])]
        if row["status"] != "done" or row["eval_name"] is None:
            detail = (row["error"] or "").splitlines()[0] if row["error"] else "no current score"
            cells.append([*sae, Text(row["status"], style="red"), "", "", "", "", "", "", Text(detail)])
        elif row["eval_kind"] == "sparse_probing":
            probing.setdefault(row["model"], []).append([
                *sae, row["eval_name"], num(row["sae_top_1_test_accuracy"]), num(row["llm_top_1_test_accuracy"]),
                num(row["sae_test_accuracy"]), num(row["llm_test_accuracy"]), _health(row)])
        else:
            cells.append([*sae, row["eval_name"], pct(row["loss_recovered"]), num(row["kl_score"]),
                          num(row["l0"], 2), pct(row["dead_fraction"]), num(row["explained_variance"]),
                          num(row["absorption"]), _health(row)])
    tables: list[RenderableType] = []
    for model, (title, cells) in core.items():
        if cells:
            tables.append(fit_table(core_cols, cells, width, title=title))
        if model in probing:
            cols, cells = _without_empty_health(probe_cols, probing[model])
            tables.append(fit_table(cols, cells, width, title=f"{title}: sparse probing test accuracy"))
    return tables


def _without_empty_health(cols: list[Col], rows: list[list[Cell]]) -> tuple[list[Col], list[list[Cell]]]:
    """The Health column is left out where no row has a gate (no threshold on a probing metric)."""
    if all(str(row[-1]) == "-" for row in rows):
        return cols[:-1], [row[:-1] for row in rows]
    return cols, rows
