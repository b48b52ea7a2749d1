"""The report as neutral blocks (headings, paragraphs, bullets, tables) that every text renderer
(Markdown, rich, HTML) prints, so all formats show the same cells with the same digits.

Layers are seed groups (`suite.seeds`): with a seed axis a cell is the across-seed mean ± the
sample standard deviation, and the health verdict is the group's (`HEALTH_RULE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from suite.report import RULES, SIGNIFICANCE, EvalCell, ModelReport, Provenance, Report, seed_cell
from suite.report_compare import Comparison, LayerDelta
from suite.report_numbers import num, num_spread, pct, pct_spread, points
from suite.seeds import HEALTH_RULE, SPREAD_RULE, LayerGroup


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
    whole: list[bool] = field(default_factory=list)  # columns whose values are never wrapped (ids, numbers)
    verdicts: list[str | None] = field(default_factory=list)  # per row: healthy | partial | unhealthy | None
    kind: str = ""  # layers | summary | deltas: lets the HTML page tag its tables
    model: str = ""  # the model of a layers table

    def __post_init__(self) -> None:
        self.whole = self.whole or [False] * len(self.headers)
        self.verdicts = self.verdicts or [None] * len(self.rows)


Block = Heading | Paragraph | Bullets | TableBlock


def verdict(passed: int, total: int) -> str:
    return "healthy" if passed == total else ("partial" if 2 * passed >= total else "unhealthy")


MARKS = {"healthy": "✅", "partial": "⚠️", "unhealthy": "❌"}


def _with_interval(cell: EvalCell | None, metric: str, as_percent: bool) -> str:
    if cell is None:
        return "n/a"
    if metric in cell.spreads:
        return (pct_spread if as_percent else num_spread)(cell.spreads[metric])
    value = cell.get(metric)
    if value is None:
        return "n/a"
    interval = cell.intervals.get(metric)
    if as_percent:
        return pct(value) + (f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else "")
    return num(value, 2) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def _plain(cell: EvalCell | None, metric: str, as_percent: bool, digits: int = 2) -> str:
    """A value without its interval; across seeds, mean ± sd."""
    if cell is None:
        return "n/a"
    if metric in cell.spreads:
        return (pct_spread(cell.spreads[metric]) if as_percent else num_spread(cell.spreads[metric], digits))
    return pct(cell.get(metric)) if as_percent else num(cell.get(metric), digits)


def eval_rows(report: Report, model: ModelReport, names: list[str], metrics: list[tuple[str, int]]) -> list[list[str]]:
    """Per layer and eval of `names` the layer was scored on: label, eval, then each (metric,
    digits) as `_plain` shows it (across seeds, mean ± sd)."""
    rows = []
    for group in model.layers:
        for name in names:
            if name in group.eval_names():
                cell = seed_cell(group, name)
                rows.append([group.label(report.with_settings), name,
                             *(_plain(cell, metric, False, digits) for metric, digits in metrics)])
    return rows


def health_cell(group: LayerGroup) -> str:
    n, total = len(group.passed_everywhere()), len(group.gate_metrics())
    text = f"{MARKS[verdict(n, total)]} {n}/{total}"
    failed = group.failed_gates()
    if failed:
        where = sorted({(g.metric, g.eval_name, seed) for seed, g in failed}, key=lambda t: (t[0], t[1], t[2] or 0))
        text += " — failed: " + ", ".join(
            f"{metric} ({eval_name}{f', seed {seed}' if group.has_seeds else ''})" for metric, eval_name, seed in where)
        if any(g.allowed_to_fail for _, g in failed):
            text += " (allowed to fail)"
    not_applicable = sorted({g.metric for g in group.not_applicable()})
    if not_applicable:
        text += f"; n/a: {', '.join(not_applicable)}"
    if group.has_seeds:
        text += f"; seeds healthy {group.healthy_seeds}/{len(group.rows)}"
    return text


def _absorption_cell(group: LayerGroup) -> str:
    """Absorption does not depend on the eval dataset: one value (stored under each eval)."""
    shown = {num_spread(stat, 3) for e in group.eval_names() if (stat := group.stat(e, "absorption")) is not None}
    return " / ".join(sorted(shown)) if shown else "n/a"


def _seeds(group: LayerGroup) -> str:
    return ", ".join("n/a" if s is None else str(s) for s in group.seeds)


def _configuration(model: ModelReport) -> Paragraph | None:
    layers = model.layers
    settings = {g.settings_key for g in layers}
    if len(settings) != 1 or next(iter(settings))[0] == "imported":
        return None
    hook, arch, k, latents, lr, batch, ctx, tokens, dataset = next(iter(settings))
    seeds = sorted({s for g in layers for s in g.seeds if s is not None})
    trained = sum({r.train_seconds for r in model.rows if r.train_seconds})
    k_text = f" k={k}" if k is not None else ""
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    return Paragraph(
        f"Configuration: {arch}{k_text} on {hook}, {latents} latents, context {ctx}, lr {lr:g}, batch {batch}, "
        f"{tokens:,} training tokens from {dataset}, {seed_text}. "
        f"Training time: {trained:.1f} s (SAEs sharing a forward pass share their time).")


def layer_table(report: Report, model: ModelReport) -> TableBlock:
    evals = report.eval_names
    seeded = report.seeded
    headers = (["Layer"] + (["Seeds"] if seeded else []) + [f"Loss recovered ({e})" for e in evals]
               + [f"L0 ({' / '.join(evals)})", f"Dead % ({' / '.join(evals)})", "Absorption", "Health"])
    rows, verdicts = [], []
    for group in model.layers:
        cells = [seed_cell(group, e) if e in group.eval_names() else None for e in evals]
        rows.append(
            [group.label(report.with_settings)] + ([_seeds(group)] if seeded else [])
            + [_with_interval(c, "loss_recovered", True) for c in cells]
            + [" / ".join(_plain(c, "l0", False) for c in cells),
               " / ".join(_plain(c, "dead_fraction", True) for c in cells),
               _absorption_cell(group), health_cell(group)])
        verdicts.append(verdict(len(group.passed_everywhere()), len(group.gate_metrics())))
    whole = [True] + ([True] if seeded else []) + [True] * (len(evals) + 2) + [True, False]
    return TableBlock(headers, rows, whole, verdicts, "layers", model.name)


def model_blocks(report: Report, model: ModelReport) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"{model.name} (`{model.model_id}`)")]
    config = _configuration(model) if model.rows else None
    if config is not None:
        blocks.append(config)
    if model.rows:
        blocks.append(layer_table(report, model))
        from suite.report_core import CORE_NOTE, core_table
        from suite.report_probing import PROBING_NOTE, probing_table

        if (core := core_table(report, model)) is not None:
            blocks += [Paragraph(CORE_NOTE), core]

        if (probing := probing_table(report, model)) is not None:
            blocks += [Paragraph(PROBING_NOTE), probing]
    if model.failed_jobs:
        blocks.append(Paragraph("Jobs without results:"))
        blocks.append(Bullets([f"layer {layer}: {error}" for layer, error in model.failed_jobs]))
    if model.rows:
        picks = []
        for which, title in (("best", "Best layer"), ("balanced", "Most balanced layer"), ("worst", "Worst layer")):
            group = model.pick(which)
            assert group is not None
            picks.append(
                f"**{title}: {group.label(report.with_settings)}** — {len(group.passed_everywhere())}/"
                f"{len(group.gate_metrics())} gates, mean loss recovered {pct(group.mean_metric('loss_recovered'))}, "
                f"mean dead {pct(group.mean_metric('dead_fraction'))}, mean explained variance "
                f"{num(group.mean_metric('explained_variance'))}. Rule: {RULES[which]}.")
        total = len(model.layers)
        share = model.healthy_count / total
        picks.append(f"**Fully healthy layers: {model.healthy_count}/{total} ({100 * share:.0f}%)** — "
                     f"{HEALTH_RULE}.")
        blocks += [Heading(3, f"{model.name}: observations"), Bullets(picks)]
    return blocks


def significance_cell(d: LayerDelta, metric: str = "loss_recovered") -> str:
    by_seed = d.seed_significance(metric)
    if by_seed is not None:
        return f"{by_seed[0]}/{by_seed[1]} seeds"
    significant = d.significant(metric)
    return "n/a" if significant is None else ("yes" if significant else "no")


def comparison_blocks(comparison: Comparison, seeded: bool = False) -> list[Block]:
    a, b = comparison.a.name, comparison.b.name
    blocks: list[Block] = [
        Heading(2, f"Comparison: {a} vs {b}"),
        TableBlock(["Metric", a, b, f"Δ ({b} − {a})", "Verdict"],
                   [[s.label, s.a, s.b, s.delta, s.verdict] for s in comparison.summary],
                   [False, True, True, True, False], kind="summary"),
        Heading(3, "Per layer"),
    ]
    rows = []
    for d in comparison.layers:
        rows.append([
            d.label, d.eval_name, _with_interval(d.a, "loss_recovered", True),
            _with_interval(d.b, "loss_recovered", True), points(d.a.get("loss_recovered"), d.b.get("loss_recovered")),
            significance_cell(d), _plain(d.a, "dead_fraction", True), _plain(d.b, "dead_fraction", True),
            _plain(d.a, "l0", False), _plain(d.b, "l0", False),
        ])
    blocks.append(TableBlock(
        ["Layer", "Eval", f"Loss recovered {a}", f"Loss recovered {b}", "Δ", "Significant",
         f"Dead {a}", f"Dead {b}", f"L0 {a}", f"L0 {b}"], rows, [True] * 10, kind="deltas"))
    text = (f"A difference is called significant only when the {SIGNIFICANCE} (a conservative test). "
            "Intervals are shown in brackets.")
    if seeded:
        text += (" With seeds, Δ is the difference of the across-seed means, and significance is counted per seed: "
                 "each seed's SAE of one model against the same seed's SAE of the other.")
    blocks.append(Paragraph(text))
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
        Paragraph("Health gates (per eval dataset): " + ("; ".join(thresholds) or "none") + f"; {HEALTH_RULE}."
                  + (" Not applicable (no number is stored, and the gate neither passes nor fails):"
                     if not_applicable else "")),
    ]
    if not_applicable:
        blocks.append(Bullets(not_applicable))
    if report.seeded:
        blocks.append(Paragraph(f"Seeds: the grid has a seed axis, and each layer is one row: the mean across seeds, "
                                f"{SPREAD_RULE}. The JSON report also gives min, max and every seed's value. "
                                "Intervals of single SAEs are not pooled across seeds."))
    if report.provenance is not None:
        blocks += provenance_blocks(report.provenance)
    for model in report.models.values():
        blocks += model_blocks(report, model)
    if comparison is not None:
        blocks += comparison_blocks(comparison, report.seeded)
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
