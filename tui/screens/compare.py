"""Two models side by side: the report's summary verdicts, per-layer deltas with significance,
and loss recovered by layer on one chart. The picked pair is kept across refreshes."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Label, Select
from textual_plotext import PlotextPlot

from suite.report import Comparison, Report, compare, pct, points
from tui.screens.base import DataScreen
from tui.widgets.charts import draw_lines
from tui.widgets.table import Column, KeyedTable, Row

DELTA_COLUMNS = [Column("layer", "Layer"), Column("eval", "Eval"), Column("lr_a", "Loss rec. A"),
                 Column("lr_b", "Loss rec. B"), Column("delta", "Δ pts"), Column("sig", "Sig."),
                 Column("dead_a", "Dead % A"), Column("dead_b", "Dead % B")]
# summary columns that wrap (rows grow) so the table fits 80 columns
METRIC_WIDTH, DELTA_WIDTH, VERDICT_WIDTH = 14, 10, 18


def dead(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


class CompareScreen(DataScreen):
    """Pick models A and B at the top (tab moves between pickers and tables)."""

    WIDGET_KEYS = [("model picker", Select)]  # listed in the help
    def __init__(self) -> None:
        super().__init__()
        self.chosen: tuple[str, str] | None = None

    def body(self) -> ComposeResult:
        with Horizontal(id="pickers"):
            yield Select([], id="model-a", prompt="model A", allow_blank=True)
            yield Select([], id="model-b", prompt="model B", allow_blank=True)
        with VerticalScroll():
            yield Label("", id="legend")
            yield DataTable(id="summary", zebra_stripes=True)
            yield KeyedTable(id="deltas")
            yield PlotextPlot(id="by-layer")

    def fetch(self) -> Report:
        return self.view.report()

    def draw(self, report: Report) -> None:
        names = list(report.models)
        a, b = self.query_one("#model-a", Select), self.query_one("#model-b", Select)
        if self.chosen is not None and not set(self.chosen) <= set(names):
            self.chosen = None
        with self.prevent(Select.Changed):
            a.set_options((Text(n), n) for n in names)
            b.set_options((Text(n), n) for n in names)
            if self.chosen is None and len(names) >= 2:
                self.chosen = (names[0], names[1])
            if self.chosen is not None:
                a.value, b.value = self.chosen
        self.draw_pair(report)

    @on(Select.Changed)
    def picked(self) -> None:
        a, b = self.query_one("#model-a", Select).value, self.query_one("#model-b", Select).value
        if isinstance(a, str) and isinstance(b, str) and (a, b) != self.chosen:
            self.chosen = (a, b)
            if self._last_data is not None:
                self.draw(self._last_data)

    def draw_pair(self, report: Report) -> None:
        summary = self.query_one("#summary", DataTable)
        summary.clear(columns=True)
        if self.chosen is None:
            self.query_one("#legend", Label).update("Pick two models to compare.")
            self.query_one("#deltas", KeyedTable).show(DELTA_COLUMNS, [])
            draw_lines(self.query_one("#by-layer", PlotextPlot), "loss recovered by layer", "layer", [])
            return
        a, b = self.chosen
        comparison = compare(report, a, b)
        self.query_one("#legend", Label).update(Text(f"A = {a} · B = {b} · Δ = B − A"))
        self.show_summary(summary, comparison, a, b)
        self.show_deltas(comparison)
        first_eval = report.eval_names[0] if report.eval_names else None
        series = []
        for model in (a, b):
            rows = [r for r in report.models[model].rows if first_eval in r.evals]
            series.append((model, [float(r.layer) for r in rows],
                           [r.evals[first_eval].get("loss_recovered") or 0.0 for r in rows]))
        draw_lines(self.query_one("#by-layer", PlotextPlot), f"loss recovered by layer ({first_eval})", "layer",
                   series)

    def show_summary(self, summary: DataTable, comparison: Comparison, a: str, b: str) -> None:
        """Columns at their natural width when the screen has room, else metric, Δ and verdict
        wrap inside narrower columns (rows grow) so nothing is cut at 80 columns."""
        headers = ["metric", a, b, "Δ", "verdict"]
        rows = [[s.label, s.a, s.b, s.delta, s.verdict] for s in comparison.summary]
        natural = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
        room = self.size.width - 2 * len(natural) - 4  # cell padding, scrollbar
        widths: list[int | None] = [None, None, None, None, None]
        if sum(natural) > room:  # the verdict wraps first, then the metric and Δ
            widths[4] = max(VERDICT_WIDTH, room - sum(natural[:4]))
            if sum(natural[:4]) + widths[4] > room:
                widths[0], widths[3] = METRIC_WIDTH, DELTA_WIDTH
                widths[4] = max(VERDICT_WIDTH, room - METRIC_WIDTH - DELTA_WIDTH - natural[1] - natural[2])
        for header, width in zip(headers, widths):
            summary.add_column(Text(header), width=width)
        for row in rows:
            summary.add_row(*(Text(str(cell)) for cell in row), height=None)

    def show_deltas(self, comparison: Comparison) -> None:
        rows = []
        for d in comparison.layers:
            significant = d.significant("loss_recovered")
            delta = d.delta("loss_recovered")
            lr_a, lr_b = d.a.get("loss_recovered"), d.b.get("loss_recovered")
            dead_a, dead_b = d.a.get("dead_fraction"), d.b.get("dead_fraction")
            rows.append(Row(f"{d.label}\t{d.eval_name}", [
                Text(d.label), Text(d.eval_name), pct(lr_a), pct(lr_b),
                Text(points(lr_a, lr_b).removesuffix(" pts"),
                     style="" if delta is None else ("green" if delta >= 0 else "red")),
                "n/a" if significant is None else ("yes" if significant else "no"), dead(dead_a), dead(dead_b)],
                [d.layer, d.eval_name, lr_a, lr_b, delta, significant, dead_a, dead_b]))
        self.query_one("#deltas", KeyedTable).show(DELTA_COLUMNS, rows)
