"""What `sae-bench plan` prints: per SAE its state (done / to train / to import / to score) and
the evals it lacks, settings shared by every SAE said once above the table, then each eval's
token budgets. Built on suite.fit, so it reads at 80 columns and in a pipe."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.text import Text

from suite.budgets import EvalBudget
from suite.fit import Cell, Col, fit_table
from suite.plan import PlannedSae

# Setting columns: hoisted into one line when every SAE shares the value.
_SETTINGS = ("hook", "arch", "k", "latents", "lr", "train tokens", "seed")


def _settings(p: PlannedSae) -> dict[str, str]:
    ref = p.declared.ref
    t, s = ref.train, ref.sae
    return {"hook": ref.hook,
            "arch": s.arch if s else (p.declared.label or "imported"),
            "k": str(s.k) if s and "k" in s.identity() else "",
            "latents": str(s.latents) if s else "",
            "lr": f"{t.lr:g}" if t else "",
            "train tokens": f"{t.tokens:,}" if t else "",
            "seed": str(t.seed) if t else ""}


def plan_table(planned: list[PlannedSae], width: int) -> tuple[str, RenderableType]:
    """(a line of the settings every SAE shares, the table or records of the SAEs)."""
    settings = [_settings(p) for p in planned]
    varying = [name for name in _SETTINGS if len({s[name] for s in settings}) > 1]
    shared = [f"{name} {settings[0][name]}" for name in _SETTINGS
              if name not in varying and settings and settings[0][name]]
    cols = [Col("sae", whole=True), Col("model", whole=True), Col("model id", whole=True),
            Col("layer", whole=True, justify="right")]
    cols += [Col(name, whole=name != "hook", justify="right" if name not in ("hook", "arch") else "left")
             for name in varying]
    cols += [Col("state", whole=True), Col("evals to score"), Col("note")]
    rows: list[list[Cell]] = []
    for p, s in zip(planned, settings):
        ref = p.declared.ref
        state = Text(p.state, style="green" if p.state == "done" else "yellow")
        rows.append([ref.sae_id, ref.model.name, ref.model.id, str(ref.layer), *(s[name] for name in varying),
                     state, ", ".join(task.name for task in p.missing) or "-", p.note])
    if not any(p.note for p in planned):
        cols, rows = cols[:-1], [row[:-1] for row in rows]
    evals = {", ".join(task.name for task in p.missing) or "-" for p in planned}
    if len(evals) == 1 and len(planned) > 1:  # the same evals for every SAE: said once
        at = [c.header for c in cols].index("evals to score")
        cols, rows = cols[:at] + cols[at + 1:], [row[:at] + row[at + 1:] for row in rows]
        shared.append(f"evals to score {evals.pop()}")
    return ("every SAE: " + ", ".join(shared)) if shared else "", fit_table(cols, rows, width)


def print_plan(console: Console, shown: list[PlannedSae]) -> None:
    line, table = plan_table(shown, console.width)
    if line:
        console.print(Text(line), highlight=False)
    console.print(table)


def print_budgets(console: Console, budgets: list[EvalBudget]) -> None:
    """Each dataset eval's budgets as the run will spend them (whole batches of windows), what the
    dataset holds where known, and, once, the setting to change when it holds less."""
    if not budgets:
        return
    cols = [Col("eval", whole=True), Col("dataset", whole=True), Col("batch", whole=True),
            Col("CE/KL tokens", whole=True, justify="right"), Col("sparsity tokens", whole=True, justify="right"),
            Col("dataset holds", justify="right")]
    rows: list[list[Cell]] = []
    for b in budgets:
        ev = b.settings
        if b.available_batches is None:
            held: Cell = "not known before a run"
        elif b.enough:
            held = "enough"
        else:
            held = Text(f"{b.available_batches * ev.batch_tokens:,}", style="yellow" if b.short else "")
        rows.append([ev.name, ev.dataset.label(), f"{ev.batch_size} x {ev.ctx_len}",
                     f"{b.ce_batches * ev.batch_tokens:,}", f"{b.sparsity_batches * ev.batch_tokens:,}", held])
    console.print(fit_table(cols, rows, console.width, title="eval token budgets (whole batches of windows x ctx_len tokens)"))
    for b in budgets:
        if b.short:
            console.print(Text("warning ", style="yellow") + Text(b.advice()), highlight=False)
