"""The HTML report's charts, from the report and the store: metric by layer (one line per model,
min–max whiskers across seeds), training curves (`train_log`) and latent-density histograms
(`latent_density`). Only stored values are plotted."""

from __future__ import annotations

from dataclasses import dataclass

from suite.report import Report
from suite.report_svg import Series, bar_histogram, line_chart
from suite.store import Store

LAYER_METRICS = (  # (metric, axis label, as percent)
    ("loss_recovered", "loss recovered", True),
    ("explained_variance", "explained variance", False),
    ("kl_score", "KL score", False),
    ("dead_fraction", "dead latents", True),
    ("l0", "L0", False),
)
CURVES = (("loss", "training loss"), ("fvu", "fraction of variance unexplained"))


@dataclass
class Chart:
    section: str  # by-layer | training | density
    title: str
    svg: str


def layer_charts(report: Report) -> list[Chart]:
    charts = []
    for eval_name in report.eval_names:
        for metric, axis, percent in LAYER_METRICS:
            series = []
            for model in report.models.values():
                by_settings: dict[tuple, Series] = {}
                for group in model.layers:
                    stat = group.stat(eval_name, metric)
                    if stat is None:
                        continue
                    settings = (group.hook, group.settings_key)
                    name = model.name + (f" {group.hook}" if group.hook != "resid_post" else "")
                    if report.with_settings:
                        name = f"{model.name} {group.label(True).split(' ', 1)[-1]}"
                    s = by_settings.setdefault(settings, Series(name, []))
                    s.points.append((group.layer, stat.mean))
                    if group.has_seeds:
                        s.whiskers.append((stat.low, stat.high))
                series += [s for s in by_settings.values() if s.points]
            if series:
                for s in series:
                    order = sorted(range(len(s.points)), key=lambda i: s.points[i][0])
                    s.points = [s.points[i] for i in order]
                    s.whiskers = [s.whiskers[i] for i in order] if s.whiskers else []
                title = f"{axis} by layer ({eval_name})"
                charts.append(Chart("by-layer", title, line_chart(title, series, "layer", axis, percent, True)))
    return charts


def _row_names(report: Report) -> dict[str, tuple[str, str]]:
    """sae_id -> (model, 'layer N[ hook][ seed S]')."""
    names = {}
    for model in report.models.values():
        for group in model.layers:
            for row in group.rows:
                label = f"layer {group.label(report.with_settings)}"
                names[row.sae_id] = (model.name, label + (f" seed {row.seed}" if group.has_seeds else ""))
    return names


def training_charts(report: Report, store: Store) -> list[Chart]:
    names = _row_names(report)
    if not names:
        return []
    rows = store.query_dicts("select sae_id, step, tokens, loss, fvu from train_log where sae_id in "
                             "(select unnest(?)) order by sae_id, step", [list(names)])
    by_sae: dict[str, list[dict]] = {}
    for r in rows:
        by_sae.setdefault(r["sae_id"], []).append(r)
    charts = []
    for model in report.models:
        for column, axis in CURVES:
            series: dict[str, Series] = {}
            for sae_id in (r.sae_id for g in report.models[model].layers for r in g.rows):
                series[sae_id] = Series(names[sae_id][1], [(float(r["tokens"]), r[column])
                                                           for r in by_sae.get(sae_id, []) if r[column] is not None])
            shown = [s for s in series.values() if s.points]
            if shown:
                title = f"{model}: {axis} while training"
                charts.append(Chart("training", title, line_chart(title, shown, "tokens", axis)))
    return charts


def _bin_label(low: float | None, high: float | None) -> str:
    return "never" if low is None else f"1e{low:g}"


def density_charts(report: Report, store: Store) -> list[Chart]:
    names = _row_names(report)
    if not names:
        return []
    firsts = [g.first.sae_id for model in report.models.values() for g in model.layers]  # only these are drawn
    rows = store.query_dicts(
        "select c.sae_id, c.eval_name, d.bin, d.log10_low, d.log10_high, d.latents from latent_density d "
        "join current_scores c using (score_id) where c.sae_id in (select unnest(?)) order by c.sae_id, d.bin",
        [firsts])
    by_eval: dict[str, list[dict]] = {}
    for r in rows:
        by_eval.setdefault(r["eval_name"], []).append(r)
    charts = []
    for model in report.models.values():
        for eval_name in report.eval_names:
            firsts = [g.first.sae_id for g in model.layers]  # the first seed of each layer
            per_sae: dict[str, dict[int, int]] = {s: {} for s in firsts}
            labels: dict[int, str] = {}
            for r in by_eval.get(eval_name, []):
                if r["sae_id"] in per_sae:
                    per_sae[r["sae_id"]][r["bin"]] = r["latents"]
                    labels[r["bin"]] = _bin_label(r["log10_low"], r["log10_high"])
            bins = sorted(labels)
            series = [(names[s][1], [per_sae[s].get(b, 0) for b in bins]) for s in firsts if per_sae[s]]
            if series:
                title = f"{model.name}: latent firing frequency ({eval_name})"
                charts.append(Chart("density", title, bar_histogram(
                    title, [labels[b] for b in bins], series, "firing frequency (log10 bin start)", "latents")))
    return charts


def all_charts(report: Report, store: Store | None) -> list[Chart]:
    charts = layer_charts(report)
    if store is not None:
        charts += training_charts(report, store) + density_charts(report, store)
    return charts
