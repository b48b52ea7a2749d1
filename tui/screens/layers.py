"""Per model, a layer table like the report's for one eval at a time (`e` cycles the evals), so
it stays readable at 80 columns however many evals the spec has. Health counts every eval."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label

from suite.report import LayerRow, ModelReport, Report, num, pct
from tui.cells import health_text, layer_label, varying_settings, widget_id
from tui.screens.base import DataScreen
from tui.widgets.table import Column, KeyedTable, Row

COLUMNS = [Column("layer", "Layer"), Column("loss_recovered", "Loss rec."), Column("explained_variance", "Expl. var."),
           Column("l0", "L0"), Column("dead_fraction", "Dead %"), Column("absorption", "Absorption"),
           Column("health", "Health")]


def layer_row(row: LayerRow, eval_name: str | None, axes: list[int]) -> Row:
    cell = row.evals.get(eval_name) if eval_name else None
    absorption = row.evals["absorption"].get("absorption") if "absorption" in row.evals else None
    value = (lambda m: cell.get(m)) if cell else (lambda m: None)
    recovered, variance, l0, dead = (value(m) for m in ("loss_recovered", "explained_variance", "l0", "dead_fraction"))
    passed, total = len(row.passed_everywhere()), len(row.gate_metrics())
    return Row(row.sae_id, [
        Text(layer_label(row, axes)), pct(recovered), num(variance), num(l0, 1),
        "n/a" if dead is None else f"{100 * dead:.1f}", num(absorption), health_text(row)],
        [row.layer, recovered, variance, l0, dead, absorption, passed / total if total else None])


class LayersScreen(DataScreen):
    """Enter opens the SAE under the cursor; click a header (or `o`) to sort."""

    BINDINGS = DataScreen.BINDINGS + [
        Binding("enter", "open", "SAE"),
        Binding("e", "next_eval", "Next eval"),
        Binding("c", "app.open('compare')", "Compare"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.eval_name: str | None = None
        self.eval_names: list[str] = []

    def body(self) -> ComposeResult:
        yield Label("", id="eval-title", classes="title")
        yield VerticalScroll(id="models")

    def load(self) -> None:
        self.draw(self.view.report())

    def draw(self, report: Report) -> None:
        self.eval_names = report.eval_names
        if self.eval_name not in self.eval_names:
            self.eval_name = self.eval_names[0] if self.eval_names else None
        shown = f"eval {self.eval_name}" if self.eval_name else "no eval scored yet"
        position = f" ({self.eval_names.index(self.eval_name) + 1} of {len(self.eval_names)}, e: next)" \
            if len(self.eval_names) > 1 else ""
        self.query_one("#eval-title", Label).update(Text(f"Layers · {shown}{position} · Health: every eval"))
        axes = varying_settings([r for m in report.models.values() for r in m.rows])
        container = self.query_one("#models", VerticalScroll)
        for model in report.models.values():
            title, table = self._model_widgets(container, model)
            table.show(COLUMNS, [layer_row(r, self.eval_name, axes) for r in model.rows])
            title.update(self._title(model))
        if not isinstance(self.focused, DataTable) and container.query(DataTable):
            container.query(DataTable).first().focus()

    def _model_widgets(self, container: VerticalScroll, model: ModelReport) -> tuple[Label, KeyedTable]:
        """The title and table of a model, mounted the first time the model appears."""
        suffix = widget_id(model.name)
        found = container.query(f"#layers-{suffix}")
        if found:
            return container.query_one(f"#title-{suffix}", Label), found.first(KeyedTable)
        title = Label("", id=f"title-{suffix}", classes="title")
        table = KeyedTable(id=f"layers-{suffix}", classes="layers")
        container.mount(title, table)
        return title, table

    @staticmethod
    def _title(model: ModelReport) -> Text:
        text = Text(f"{model.name} ({model.model_id}) · {model.healthy_count}/{len(model.rows)} "
                    f"layers fully healthy")  # Text: names from the spec are not markup
        for layer, error in model.failed_jobs:
            text.append(f"\nlayer {layer}: {error}", style="red")
        return text

    def action_next_eval(self) -> None:
        if len(self.eval_names) > 1:
            self.eval_name = self.eval_names[(self.eval_names.index(self.eval_name) + 1) % len(self.eval_names)]
            self.action_refresh()

    @on(DataTable.RowSelected, ".layers")
    def open_sae(self, event: DataTable.RowSelected) -> None:
        self.app.open("job", str(event.row_key.value))  # type: ignore[attr-defined]

    def action_open(self) -> None:
        table = self.focused if isinstance(self.focused, KeyedTable) else None
        if table is not None and table.cursor_key is not None:
            self.app.open("job", table.cursor_key)  # type: ignore[attr-defined]
