"""Per model, a layer table like the report's for one eval at a time (`e` cycles the evals), so
it stays readable at 80 columns however many evals the spec has. Health counts every eval.

With a seed axis a row is a layer (suite.seeds): each cell the mean ± sample std across its
seeds, and one verdict per layer (every seed must pass); Enter opens its seeds' SAEs."""

from __future__ import annotations


from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label

from suite.seeds import HEALTH_RULE_SHORT, SPREAD_RULE
from tui.cells import HEALTH_STYLES, health_class, widget_id
from tui.layer_query import FAILURES_SHOWN, METRICS, LayerTables, ModelLayers, group_label, load_layer_tables
from tui.screens.base import DataScreen
from tui.widgets.table import Column, KeyedTable, Row

COLUMNS = [Column("layer", "Layer"), Column("loss_recovered", "Loss rec."), Column("explained_variance", "Expl. var."),
           Column("l0", "L0"), Column("dead_fraction", "Dead %"), Column("absorption", "Absorption"),
           Column("health", "Health")]


def shown(group: dict, metric: str, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """`96.00%`, or across seeds `95.00±1.00%`: the mean ± sample std of the per-seed values."""
    value, spread = group[metric], group[f"{metric}_sd"]
    if value is None:
        return "n/a"
    if spread is not None:
        return f"{scale * value:.{digits}f}±{scale * spread:.{digits}f}{unit}"
    return f"{scale * value:.{digits}f}{unit}"


def layer_row(group: dict, axes: list[int], absorption: bool) -> Row:
    """One row per layer (and SAE settings): its seeds' mean ± spread, one verdict for all seeds."""
    passed, total = group["passed"], group["total"]
    health = Text(f"{passed}/{total}", style=HEALTH_STYLES[health_class(passed, total)])
    seeded = group["seeds"] > 1
    cells = [Text(group_label(group, axes)), shown(group, "loss_recovered", 100, 1 if seeded else 2, "%"),
             shown(group, "explained_variance"), shown(group, "l0", digits=1),
             shown(group, "dead_fraction", 100, 1)]
    values = [group["layer"], *(group[m] for m in METRICS)]
    if absorption:
        cells.append(shown(group, "absorption"))
        values.append(group["absorption"])
    return Row("layer-" + group["gkey"], [*cells, health], [*values, passed / total if total else None])


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
        self.groups: dict[str, list[str]] = {}  # row key -> the layer's SAE ids, one per seed
        self.titles: dict[str, Text] = {}  # model -> its title

    def body(self) -> ComposeResult:
        yield Label("", id="eval-title", classes="title")
        yield VerticalScroll(id="models")

    def fetch(self) -> LayerTables:
        with self.view.session():
            return load_layer_tables(self.view.store, self.eval_name)

    def draw(self, tables: LayerTables) -> None:
        self.eval_names, self.eval_name = tables.eval_names, tables.eval_name
        what = f"eval {self.eval_name}" if self.eval_name else "no eval scored yet"
        position = f" ({self.eval_names.index(self.eval_name) + 1} of {len(self.eval_names)}, e: next)" \
            if len(self.eval_names) > 1 else ""
        rule = f"{HEALTH_RULE_SHORT}; {SPREAD_RULE}" if tables.seeded else "Health: gates passed on every eval"
        self.query_one("#eval-title", Label).update(Text(f"Layers · {what}{position}\n{rule}"))
        container = self.query_one("#models", VerticalScroll)
        self.groups = {}
        # the absorption column only where some SAE has an absorption score (it keeps 80 columns)
        absorption = any(g["absorption"] is not None for m in tables.models for g in m.groups)
        columns = COLUMNS if absorption else [c for c in COLUMNS if c.key != "absorption"]
        for model in tables.models:
            title, table = self._model_widgets(container, model.name)
            self.groups.update(("layer-" + g["gkey"], g["sae_ids"]) for g in model.groups)
            table.show(columns, [layer_row(g, tables.axes, absorption) for g in model.groups])
            self.titles[model.name] = self._title(model)
            self._show_title(title, table, model.name)
        if not isinstance(self.focused, DataTable) and container.query(DataTable):
            container.query(DataTable).first().focus()

    def _model_widgets(self, container: VerticalScroll, model: str) -> tuple[Label, KeyedTable]:
        """The title and table of a model, mounted the first time the model appears."""
        suffix = widget_id(model)
        found = container.query(f"#layers-{suffix}")
        if found:
            return container.query_one(f"#title-{suffix}", Label), found.first(KeyedTable)
        title = Label("", id=f"title-{suffix}", classes="title")
        table = KeyedTable(id=f"layers-{suffix}", classes="layers")
        container.mount(title, table)
        return title, table

    @staticmethod
    def _title(model: ModelLayers) -> Text:
        per_layer = f" ({model.seeds} seeds each)" if model.seeds > 1 else ""
        text = Text(f"{model.name} ({model.model_id}) · {model.healthy_count}/{len(model.groups)} "
                    f"layers fully healthy{per_layer}")  # Text: names from the spec are not markup
        for layer, error in model.failures[:FAILURES_SHOWN]:
            text.append(f"\nlayer {layer}: {error}", style="red")
        if len(model.failures) > FAILURES_SHOWN:
            text.append(f"\n… and {len(model.failures) - FAILURES_SHOWN} more SAEs without a result (not done yet, "
                        "or failed: `sae-bench sql` on the saes table lists them)", style="red")
        return text

    @staticmethod
    def _show_title(title: Label, table: KeyedTable, model: str) -> None:
        text = table.screen.titles[model].copy()  # type: ignore[attr-defined]
        if table.page_note:
            text.append(f"\n{table.page_note}", style="dim")
        title.update(text)

    @on(KeyedTable.Paged, ".layers")
    def paged(self, event: KeyedTable.Paged) -> None:
        table = event.table
        model = next((m for m in self.titles if f"layers-{widget_id(m)}" == table.id), None)
        if model is not None:
            self._show_title(self.query_one(f"#title-{widget_id(model)}", Label), table, model)

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
        if key in self.groups:
            self.app.open("job", *self.groups[key])  # type: ignore[attr-defined]
