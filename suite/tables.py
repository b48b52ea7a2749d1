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
       s.eval_name, s.loss_recovered, s.kl_score, s.l0, s.dead_fraction, s.explained_variance, s.absorption,
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


def model_tables(store: Store, sae_ids: list[str], width: int = 200) -> list[RenderableType]:
    """One table per model (its title the alias and model id), fitted to `width` (suite.fit):
    where SAE settings vary, each row names its SAE by id and settings."""
    rows = store.query_dicts(_ROWS_SQL, [sae_ids])
    settings_vary = len({(r["hook"], r["arch"], r["k"], r["latents"], r["lr"], r["seed"]) for r in rows}) > 1
    seeds_vary = len({r["seed"] for r in rows}) > 1
    cols = [Col("Layer", whole=True, justify="right")]
    if settings_vary:
        cols += [Col("SAE", whole=True), Col("Settings")]
    cols += [Col("Eval", whole=True), *_METRICS]
    by_model: dict[str, tuple[str, list[list[Cell]]]] = {}
    for row in rows:
        title, cells = by_model.setdefault(row["model"], (f"{row['model']} ({row['model_id']})", []))
        sae: list[Cell] = [row["sae_id"], _settings(row, seeds_vary)] if settings_vary else []
        if row["status"] != "done" or row["eval_name"] is None:
            detail = (row["error"] or "").splitlines()[0] if row["error"] else "no current score"
            cells.append([str(row["layer"]), *sae, Text(row["status"], style="red"), "", "", "", "", "", "",
                          Text(detail)])
            continue
        cells.append([str(row["layer"]), *sae, row["eval_name"], pct(row["loss_recovered"]), num(row["kl_score"]),
                      num(row["l0"], 2), pct(row["dead_fraction"]), num(row["explained_variance"]),
                      num(row["absorption"]), _health(row)])
    return [fit_table(cols, cells, width, title=title) for title, cells in by_model.values()]
