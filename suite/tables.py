"""Rich tables of a run's results, one per model, read back from the store (never from memory),
so what is printed is exactly what a SQL query over the file returns."""

from __future__ import annotations

from rich.table import Table

from suite.report import num, pct
from suite.store import Store

_ROWS_SQL = """
select j.job_id, j.model, j.model_id, j.layer, j.arch, j.k, j.latents, j.lr, j.status, j.error,
       s.eval_name, s.loss_recovered, s.kl_score, s.l0, s.dead_fraction, s.explained_variance,
       h.gates_passed, h.gates_total, h.gates_not_applicable, h.failed_gates
from jobs j
left join layer_summary s using (job_id)
left join health h on h.job_id = j.job_id and h.eval_name = s.eval_name
where j.job_id in (select unnest(?))
order by j.model, j.layer, j.k, j.latents, j.lr, s.eval_name
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


def model_tables(store: Store, job_ids: list[str]) -> list[Table]:
    rows = store.query_dicts(_ROWS_SQL, [job_ids])
    settings_vary = len({(r["arch"], r["k"], r["latents"], r["lr"]) for r in rows}) > 1
    tables: dict[str, Table] = {}
    for row in rows:
        model = row["model"]
        if model not in tables:
            table = Table(title=f"{model} ({row['model_id']})", title_justify="left")
            table.add_column("Layer", justify="right")
            if settings_vary:
                table.add_column("SAE")
            for name in ("Eval", "Loss recovered", "KL score", "L0", "Dead %", "Expl. var.", "Health"):
                table.add_column(name, justify="left" if name in ("Eval", "Health") else "right")
            tables[model] = table
        sae = [f"{row['arch']} k={row['k']} n={row['latents']} lr={row['lr']:g}"] if settings_vary else []
        if row["status"] != "done":
            detail = (row["error"] or "").splitlines()[0] if row["error"] else ""
            tables[model].add_row(str(row["layer"]), *sae, f"[red]{row['status']}[/red]", detail,
                                  "", "", "", "", "")
            continue
        tables[model].add_row(
            str(row["layer"]), *sae, row["eval_name"], pct(row["loss_recovered"]), num(row["kl_score"]),
            num(row["l0"], 2), pct(row["dead_fraction"]), num(row["explained_variance"]), _health(row),
        )
    return list(tables.values())
