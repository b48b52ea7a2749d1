"""Rich tables of a run's results, one per model, read back from the store (never from memory),
so what is printed is exactly what a SQL query over the file returns."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from suite.report import num, pct
from suite.store import Store

_ROWS_SQL = """
select a.sae_id, a.model, a.model_id, a.layer, a.hook, a.arch, a.k, a.latents, a.lr, a.status, a.error, a.label,
       s.eval_name, s.loss_recovered, s.kl_score, s.l0, s.dead_fraction, s.explained_variance, s.absorption,
       h.gates_passed, h.gates_total, h.gates_not_applicable, h.failed_gates
from saes a
left join layer_summary s using (sae_id)
left join health h on h.score_id = s.score_id
where a.sae_id in (select unnest(?))
order by a.model, a.layer, a.hook, a.k, a.latents, a.lr, s.eval_kind, s.eval_name
"""


def _health(row: dict) -> str:
    passed, total = row["gates_passed"], row["gates_total"]
    if total is None:
        return "-"
    colour = "green" if passed == total else ("yellow" if passed * 2 >= total else "red")
    text = f"[{colour}]{passed}/{total}[/{colour}]"
    if row["failed_gates"]:
        text += f" [dim]✗ {', '.join(row['failed_gates'])}[/dim]"
    if row["gates_not_applicable"]:
        text += f" [dim]({row['gates_not_applicable']} n/a)[/dim]"
    return text


def _settings(row: dict) -> str:
    hook = f"{row['hook']} " if row["hook"] != "resid_post" else ""
    if row["lr"] is None:  # imported
        return f"{hook}{row['label'] or 'imported'} ({row['arch']} n={row['latents']})"
    k = f" k={row['k']}" if row["k"] is not None else ""
    return f"{hook}{row['arch']}{k} n={row['latents']} lr={row['lr']:g}"


def model_tables(store: Store, sae_ids: list[str]) -> list[Table]:
    rows = store.query_dicts(_ROWS_SQL, [sae_ids])
    settings_vary = len({(r["hook"], r["arch"], r["k"], r["latents"], r["lr"]) for r in rows}) > 1
    tables: dict[str, Table] = {}
    for row in rows:
        model = row["model"]
        if model not in tables:
            table = Table(title=escape(f"{model} ({row['model_id']})"), title_justify="left")
            table.add_column("Layer", justify="right")
            if settings_vary:
                table.add_column("SAE")
            for name in ("Eval", "Loss recovered", "KL score", "L0", "Dead %", "Expl. var.", "Absorption", "Health"):
                table.add_column(name, justify="left" if name in ("Eval", "Health") else "right")
            tables[model] = table
        sae = [escape(_settings(row))] if settings_vary else []
        if row["status"] != "done" or row["eval_name"] is None:
            detail = (row["error"] or "").splitlines()[0] if row["error"] else "no current score"
            tables[model].add_row(str(row["layer"]), *sae, f"[red]{row['status']}[/red]", escape(detail),
                                  "", "", "", "", "", "")
            continue
        tables[model].add_row(
            str(row["layer"]), *sae, escape(row["eval_name"]), pct(row["loss_recovered"]), num(row["kl_score"]),
            num(row["l0"], 2), pct(row["dead_fraction"]), num(row["explained_variance"]), num(row["absorption"]),
            _health(row),
        )
    return list(tables.values())
