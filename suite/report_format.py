"""Report rendering: the report as neutral blocks, then Markdown, rich (terminal) or HTML.

Cells are formatted once here, so all three formats print the same digits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from suite.report import (
    RULES,
    SIGNIFICANCE,
    Comparison,
    LayerRow,
    ModelReport,
    Provenance,
    Report,
    num,
    pct,
    points,
)


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class TableBlock:
    headers: list[str]
    rows: list[list[str]]


Block = Heading | Paragraph | Bullets | TableBlock


def _with_interval(row_cell, metric: str, as_percent: bool) -> str:
    value = row_cell.get(metric)
    if value is None:
        return "n/a"
    interval = row_cell.intervals.get(metric)
    if as_percent:
        text = pct(value)
        return text + (f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else "")
    return num(value, 2) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def _health_cell(row: LayerRow) -> str:
    n, total = len(row.passed_everywhere()), len(row.gate_metrics())
    mark = "✅" if n == total else ("⚠️" if 2 * n >= total else "❌")
    text = f"{mark} {n}/{total}"
    failed = row.failed_gates()
    if failed:
        text += " — failed: " + ", ".join(f"{g.metric} ({g.eval_name})" for g in failed)
        if any(g.allowed_to_fail for g in failed):
            text += " (allowed to fail)"
    not_applicable = sorted({g.metric for g in row.not_applicable()})
    if not_applicable:
        text += f"; n/a: {', '.join(not_applicable)}"
    return text


def _absorption_cell(row: LayerRow) -> str:
    """Absorption does not depend on the eval dataset: one value (stored under each eval)."""
    values = {num(v) for c in row.evals.values() if (v := c.get("absorption")) is not None}
    return " / ".join(sorted(values)) if values else "n/a"


def model_blocks(report: Report, model: ModelReport) -> list[Block]:
    evals = report.eval_names
    blocks: list[Block] = [Heading(2, f"{model.name} (`{model.model_id}`)")]
    if model.rows:
        settings = {r.settings_key for r in model.rows}
        if len(settings) == 1 and next(iter(settings))[0] != "imported":
            hook, arch, k, latents, lr, batch, ctx, tokens, seed, dataset = next(iter(settings))
            trained = sum({r.train_seconds for r in model.rows if r.train_seconds})
            k_text = f" k={k}" if k is not None else ""
            blocks.append(Paragraph(
                f"Configuration: {arch}{k_text} on {hook}, {latents} latents, context {ctx}, lr {lr:g}, batch {batch}, "
                f"{tokens:,} training tokens from {dataset}, seed {seed}. "
                f"Training time: {trained:.1f} s (SAEs sharing a forward pass share their time)."))
        headers = ["Layer"] + [f"Loss recovered ({e})" for e in evals] + [
            f"L0 ({' / '.join(evals)})", f"Dead % ({' / '.join(evals)})", "Absorption", "Health"]
        rows = []
        for row in model.rows:
            cells = [row.evals.get(e) for e in evals]
            rows.append(
                [row.label(report.with_settings)]
                + [_with_interval(c, "loss_recovered", True) if c else "n/a" for c in cells]
                + [" / ".join(num(c.get("l0"), 2) if c else "n/a" for c in cells),
                   " / ".join(pct(c.get("dead_fraction")) if c else "n/a" for c in cells),
                   _absorption_cell(row), _health_cell(row)])
        blocks.append(TableBlock(headers, rows))
    if model.failed_jobs:
        blocks.append(Paragraph("Jobs without results:"))
        blocks.append(Bullets([f"layer {layer}: {error}" for layer, error in model.failed_jobs]))
    if model.rows:
        picks = []
        for which, title in (("best", "Best layer"), ("balanced", "Most balanced layer"), ("worst", "Worst layer")):
            row = model.pick(which)
            assert row is not None
            picks.append(
                f"**{title}: {row.label(report.with_settings)}** — {len(row.passed_everywhere())}/"
                f"{len(row.gate_metrics())} gates, mean loss recovered {pct(row.mean_metric('loss_recovered'))}, "
                f"mean dead {pct(row.mean_metric('dead_fraction'))}, mean explained variance "
                f"{num(row.mean_metric('explained_variance'))}. Rule: {RULES[which]}.")
        share = model.healthy_count / len(model.rows)
        picks.append(f"**Fully healthy layers: {model.healthy_count}/{len(model.rows)} ({100 * share:.0f}%)** — "
                     "a layer is healthy when every applicable gate passes on every eval dataset.")
        blocks += [Heading(3, f"{model.name}: observations"), Bullets(picks)]
    return blocks


def comparison_blocks(comparison: Comparison, with_settings: bool) -> list[Block]:
    a, b = comparison.a.name, comparison.b.name
    blocks: list[Block] = [
        Heading(2, f"Comparison: {a} vs {b}"),
        TableBlock(["Metric", a, b, f"Δ ({b} − {a})", "Verdict"],
                   [[s.label, s.a, s.b, s.delta, s.verdict] for s in comparison.summary]),
        Heading(3, "Per layer"),
    ]
    rows = []
    for d in comparison.layers:
        significant = d.significant("loss_recovered")
        rows.append([
            d.label, d.eval_name, _with_interval(d.a, "loss_recovered", True),
            _with_interval(d.b, "loss_recovered", True), points(d.a.get("loss_recovered"), d.b.get("loss_recovered")),
            "n/a" if significant is None else ("yes" if significant else "no"),
            pct(d.a.get("dead_fraction")), pct(d.b.get("dead_fraction")),
            num(d.a.get("l0"), 2), num(d.b.get("l0"), 2),
        ])
    blocks.append(TableBlock(
        ["Layer", "Eval", f"Loss recovered {a}", f"Loss recovered {b}", "Δ", "Significant",
         f"Dead {a}", f"Dead {b}", f"L0 {a}", f"L0 {b}"], rows))
    blocks.append(Paragraph(
        f"A difference is called significant only when the {SIGNIFICANCE} (a conservative test). "
        "Intervals are shown in brackets."))
    return blocks


def report_blocks(report: Report, comparison: Comparison | None) -> list[Block]:
    title = ", ".join(report.suites) or "sae-bench"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    last = report.runs[-1] if report.runs else None
    thresholds = sorted({g.describe() for m in report.models.values() for r in m.rows for g in r.gates})
    not_applicable = sorted({f"{m.name} layer {r.layer}, {g.metric}: {g.reason}" for m in report.models.values()
                             for r in m.rows for g in r.not_applicable()})
    blocks: list[Block] = [
        Heading(1, f"{title}: SAE health report"),
        Paragraph(f"Computed by sae-bench from `{report.db_path}` ({len(report.runs)} run(s), last "
                  f"{last['run_id'] if last else 'n/a'}); every number below is a stored value or an aggregate "
                  f"of the rows shown. Generated {generated}."),
        Paragraph("Health gates (per eval dataset): " + ("; ".join(thresholds) or "none") + "."
                  + (" Not applicable (no number is stored, and the gate neither passes nor fails):"
                     if not_applicable else "")),
    ]
    if not_applicable:
        blocks.append(Bullets(not_applicable))
    if report.provenance is not None:
        blocks += provenance_blocks(report.provenance)
    for model in report.models.values():
        blocks += model_blocks(report, model)
    if comparison is not None:
        blocks += comparison_blocks(comparison, report.with_settings)
    return blocks


def provenance_blocks(provenance: Provenance) -> list[Block]:
    """What produced the numbers, so a reader can tell whether a rerun elsewhere should agree."""
    items = []
    run = provenance.run
    if run is not None:
        versions = ", ".join(f"{name} {run.get(name + '_version') or 'n/a'}"
                             for name in ("sae_bench", "torch", "transformers", "datasets", "duckdb", "python"))
        items.append(f"Last run {run['run_id']} on {run.get('device_name') or run.get('device') or 'n/a'} "
                     f"({run.get('platform') or 'platform n/a'}): {versions}.")
    for m in provenance.models:
        shas = ", ".join(m["model_sha"] or []) or "n/a"
        items.append(f"Model {m['model']} (`{m['model_id']}`): {shas}.")
    for e in provenance.evals:
        fingerprints = ", ".join(f[:16] for f in e["fingerprints"] or []) or "n/a"
        items.append(f"Eval {e['eval_name']} ({e['eval_dataset'] or 'its own prompts'}): token stream sha256 "
                     f"{fingerprints} ({e['scores']} score(s)).")
    return [Heading(2, "Provenance"), Bullets(items)] if items else []


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        else:
            lines = ["| " + " | ".join(_md_escape(h) for h in block.headers) + " |",
                     "|" + "|".join("---" for _ in block.headers) + "|"]
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def to_console(blocks: list[Block], console: Console) -> None:
    for block in blocks:
        if isinstance(block, TableBlock):
            table = Table(show_lines=False)
            for header in block.headers:  # Text: names from the spec are never read as markup or emoji
                table.add_column(Text(header), overflow="fold")
            for row in block.rows:
                table.add_row(*(Text(cell) for cell in row))
            console.print(table)
        else:
            console.print(Markdown(to_markdown([block])))


def to_html(blocks: list[Block]) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    to_console(blocks, console)
    return console.export_html(inline_styles=True)
