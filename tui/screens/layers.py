"""Per model, a layer table like the report's for one eval at a time (`e` cycles the evals), so
it stays readable at 80 columns however many evals the spec has. Health counts every eval.

With a seed axis a row is a layer (suite.seeds): each cell the mean ± sample std across its
seeds, and one verdict per layer (every seed must pass); Enter opens its seeds' SAEs."""

from __future__ import annotations

import hashlib

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label

from suite.report import EvalCell, ModelReport, Report, seed_cell
from suite.seeds import HEALTH_RULE_SHORT, SPREAD_RULE, LayerGroup
from tui.cells import HEALTH_STYLES, health_class, layer_label, varying_settings, widget_id
from tui.screens.base import DataScreen
from tui.widgets.table import Column, KeyedTable, Row

COLUMNS = [Column("layer", "Layer"), Column("loss_recovered", "Loss rec."), Column("explained_variance", "Expl. var."),
           Column("l0", "L0"), Column("dead_fraction", "Dead %"), Column("absorption", "Absorption"),
           Column("health", "Health")]


def group_key(group: LayerGroup) -> str:
    """A row key that stays the same while seeds of the layer arrive (cursor kept during a run)."""
    identity = repr((group.model, group.layer, group.hook, group.settings_key))
    return "layer-" + hashlib.sha1(identity.encode()).hexdigest()[:12]


def shown(cell: EvalCell | None, metric: str, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """`96.00%`, or across seeds `95.00±1.00%`: the mean ± sample std of the per-seed values."""
    value = cell.get(metric) if cell is not None else None
    if value is None:
        return "n/a"
    spread = cell.spreads.get(metric)
    if spread is not None and spread.std is not None:
        return f"{scale * spread.mean:.{digits}f}±{scale * spread.std:.{digits}f}{unit}"
    return f"{scale * value:.{digits}f}{unit}"


def layer_row(group: LayerGroup, eval_name: str | None, axes: list[int]) -> Row:
    """One row per layer (and SAE settings): its seeds' mean ± spread, one verdict for all seeds."""
    cell = seed_cell(group, eval_name) if eval_name and eval_name in group.eval_names() else None
    absorption = seed_cell(group, "absorption") if "absorption" in group.eval_names() else None
    passed, total = len(group.passed_everywhere()), len(group.gate_metrics())
    health = Text(f"{passed}/{total}", style=HEALTH_STYLES[health_class(passed, total)])
    value = (lambda c, m: c.get(m) if c is not None else None)
    return Row(group_key(group), [
        Text(layer_label(group.first, axes)), shown(cell, "loss_recovered", 100, 2, "%"),
        shown(cell, "explained_variance"), shown(cell, "l0", digits=1), shown(cell, "dead_fraction", 100, 1),
        shown(absorption, "absorption"), health],
        [group.layer, value(cell, "loss_recovered"), value(cell, "explained_variance"), value(cell, "l0"),
         value(cell, "dead_fraction"), value(absorption, "absorption"), passed / total if total else None])


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
        self.groups: dict[str, LayerGroup] = {}  # row key -> the layer's seeds

    def body(self) -> ComposeResult:
        yield Label("", id="eval-title", classes="title")
        yield VerticalScroll(id="models")

    def load(self) -> None:
        self.draw(self.view.report())

    def draw(self, report: Report) -> None:
        self.eval_names = report.eval_names
        if self.eval_name not in self.eval_names:
            self.eval_name = self.eval_names[0] if self.eval_names else None
        what = f"eval {self.eval_name}" if self.eval_name else "no eval scored yet"
        position = f" ({self.eval_names.index(self.eval_name) + 1} of {len(self.eval_names)}, e: next)" \
            if len(self.eval_names) > 1 else ""
        rule = f"{HEALTH_RULE_SHORT}; {SPREAD_RULE}" if report.seeded else "Health: gates passed on every eval"
        self.query_one("#eval-title", Label).update(Text(f"Layers · {what}{position}\n{rule}"))
        axes = varying_settings([r for m in report.models.values() for r in m.rows])
        container = self.query_one("#models", VerticalScroll)
        self.groups = {}
        for model in report.models.values():
            title, table = self._model_widgets(container, model)
            groups = model.layers
            self.groups.update((group_key(g), g) for g in groups)
            table.show(COLUMNS, [layer_row(g, self.eval_name, axes) for g in groups])
            title.update(self._title(model, len(groups), max((len(g.rows) for g in groups), default=1)))
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
    def _title(model: ModelReport, layers: int, seeds: int) -> Text:
        per_layer = f" ({seeds} seeds each)" if seeds > 1 else ""
        text = Text(f"{model.name} ({model.model_id}) · {model.healthy_count}/{layers} "
                    f"layers fully healthy{per_layer}")  # Text: names from the spec are not markup
        for layer, error in model.failed_jobs:
            text.append(f"\nlayer {layer}: {error}", style="red")
        return text

    def action_next_eval(self) -> None:
        if len(self.eval_names) > 1:
            self.eval_name = self.eval_names[(self.eval_names.index(self.eval_name) + 1) % len(self.eval_names)]
            self.action_refresh()

    @on(DataTable.RowSelected, ".layers")
    def open_sae(self, event: DataTable.RowSelected) -> None:
        self.open_group(str(event.row_key.value))

    def action_open(self) -> None:
        table = self.focused if isinstance(self.focused, KeyedTable) else None
        if table is not None and table.cursor_key is not None:
            self.open_group(table.cursor_key)

    def open_group(self, key: str) -> None:
        group = self.groups.get(key)
        if group is not None:
            self.app.open("job", *group.sae_ids)  # type: ignore[attr-defined]
