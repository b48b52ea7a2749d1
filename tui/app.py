"""`sae-bench tui`: browse runs, layer tables, SAEs and model comparisons of a results file.

Reads only, through `suite.store.Store` (short read-only connections, a snapshot copy if another
process holds the file) and builds every table from `suite.report`, so it shows the same
numbers, health verdicts and comparisons as `sae-bench report`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, OptionList, Select, Static
from textual_plotext import PlotextPlot

from suite.report import (
    LayerRow,
    Report,
    compare,
    load_report,
    num,
    pct,
    points,
    sql_cell,
)
from suite.store import Store, StoreError
from suite.store.readonly import QueryRefused, run_query
from suite.store.recovery import reconcile_if_idle

REFRESH_SECONDS = 5.0
HEALTH_STYLES = {"healthy": "bold green", "partial": "bold yellow", "unhealthy": "bold red"}


def widget_id(name: str) -> str:
    """A Textual id for a spec name (`[/bold]`, `llama.v2` are valid aliases, not valid ids)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        return name
    return "x" + hashlib.sha1(name.encode()).hexdigest()[:12]


def health_class(row: LayerRow) -> str:
    """green: all gates pass; yellow: at least half; red: most failed."""
    passed, total = len(row.passed_everywhere()), len(row.gate_metrics())
    if passed == total:
        return "healthy"
    return "partial" if 2 * passed >= total else "unhealthy"


def health_text(row: LayerRow) -> Text:
    passed, total = len(row.passed_everywhere()), len(row.gate_metrics())
    return Text(f"{passed}/{total}", style=HEALTH_STYLES[health_class(row)])


class StoreView:
    """The app's read access: one Store, and whether the last read came from a snapshot."""

    def __init__(self, path: Path):
        self.store = Store(path, lock_wait=1.0, snapshot_on_lock=True)

    def report(self) -> Report:
        return load_report(self.store)

    def runs(self) -> list[dict]:
        return self.store.query_dicts("""
            select r.run_id, r.suite, r.started_at, r.status, r.saes_planned, r.saes_to_train, r.scores_to_run,
                   count(a.sae_id) filter (where a.status = 'done') as done,
                   count(a.sae_id) filter (where a.status = 'failed') as failed
            from runs r left join saes a using (run_id) group by all order by r.started_at desc""")

    def sae(self, sae_id: str) -> dict:
        return self.store.query_dicts("select * from saes where sae_id = ?", [sae_id])[0]

    def train_log(self, sae_id: str) -> list[dict]:
        return self.store.query_dicts("select * from train_log where sae_id = ? order by step", [sae_id])

    @property
    def source(self) -> str:
        return "snapshot (another process holds the file)" if self.store.last_read_was_snapshot else "live"


class SaeScreen(Screen):
    BINDINGS = [Binding("r", "refresh", "Refresh"), Binding("escape", "back", "Back"),
                Binding("question_mark", "help", "Help", key_display="?"), Binding("q", "app.quit", "Quit")]

    @property
    def view(self) -> StoreView:
        return self.app.view  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        try:
            self.load()
            self.sub_title = f"{self.view.store.path.name} · {self.view.source}"
        except StoreError as exc:
            self.notify(str(exc), severity="error", markup=False)

    def load(self) -> None:
        pass

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())


class RunsScreen(SaeScreen):
    """Every run in the file, newest first. Enter opens the layer tables."""

    BINDINGS = SaeScreen.BINDINGS + [Binding("s", "sql", "SQL"), Binding("c", "compare", "Compare")]

    def body(self) -> ComposeResult:
        yield Label("Runs", classes="title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.add_columns("run", "suite", "started (UTC)", "status", "trained", "failed", "SAEs")
        super().on_mount()
        self.set_interval(REFRESH_SECONDS, self.action_refresh)

    def load(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.clear()
        colours = {"finished": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
        for run in self.view.runs():
            table.add_row(run["run_id"], run["suite"], f"{run['started_at']:%Y-%m-%d %H:%M}",
                          Text(run["status"], style=colours.get(run["status"], "")), str(run["done"]),
                          str(run["failed"]), str(run["saes_planned"]), key=run["run_id"])

    @on(DataTable.RowSelected, "#runs")
    def open_run(self, _event: DataTable.RowSelected) -> None:
        self.app.push_screen(LayersScreen())

    def action_sql(self) -> None:
        self.app.push_screen(SqlScreen())

    def action_compare(self) -> None:
        self.app.push_screen(CompareScreen())


class LayersScreen(SaeScreen):
    """Per model, a layer table like the report's, health-coloured and sortable by clicking a
    column header. Enter opens the SAE."""

    BINDINGS = SaeScreen.BINDINGS + [Binding("c", "compare", "Compare")]

    def __init__(self):
        super().__init__()
        self.sorted_by: dict[str, tuple[str, bool]] = {}

    def body(self) -> ComposeResult:
        yield VerticalScroll(id="models")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(REFRESH_SECONDS, self.action_refresh)

    def load(self) -> None:
        report = self.view.report()
        container = self.query_one("#models", VerticalScroll)
        for model in report.models.values():
            table_id = f"layers-{widget_id(model.name)}"
            found = container.query(f"#{table_id}")
            if found:
                table = found.first(DataTable)
                title = container.query_one(f"#title-{widget_id(model.name)}", Label)
                table.clear()
            else:
                title = Label("", id=f"title-{widget_id(model.name)}", classes="title")
                table = DataTable(id=table_id, cursor_type="row", zebra_stripes=True, classes="layers")
                table.add_column("Layer", key="layer")
                for name in report.eval_names:
                    table.add_column(Text(f"LR {name}"), key=f"lr:{name}")
                table.add_columns("L0", "Dead %", "Absorption")
                table.add_column("Health", key="health")
                container.mount(title, table)
            for row in model.rows:
                cells = [row.evals.get(e) for e in report.eval_names]
                table.add_row(
                    Text(row.label(report.with_settings)),
                    *[pct(c.get("loss_recovered")) if c else "n/a" for c in cells],
                    " / ".join(num(c.get("l0"), 1) if c else "n/a" for c in cells),
                    " / ".join(pct(c.get("dead_fraction")) if c else "n/a" for c in cells),
                    num(row.evals["absorption"].get("absorption")) if "absorption" in row.evals else "n/a",
                    health_text(row), key=row.sae_id)
            title_text = Text(f"{model.name} ({model.model_id}) · {model.healthy_count}/{len(model.rows)} "
                              f"layers fully healthy")  # Text: names from the spec are not markup
            for layer, error in model.failed_jobs:
                title_text.append(f"\nlayer {layer}: {error}", style="red")
            title.update(title_text)
        if not isinstance(self.focused, DataTable) and container.query(DataTable):
            container.query(DataTable).first().focus()

    @on(DataTable.HeaderSelected)
    def sort_column(self, event: DataTable.HeaderSelected) -> None:
        table = event.data_table
        previous = self.sorted_by.get(table.id or "")
        reverse = previous is not None and previous[0] == str(event.column_key.value) and not previous[1]
        self.sorted_by[table.id or ""] = (str(event.column_key.value), reverse)

        def key(cell):
            text = cell.plain if isinstance(cell, Text) else str(cell)
            head = text.split(" ")[0].split("/")[0].rstrip("%")
            try:
                return (0, float(head))
            except ValueError:
                return (1, text)

        table.sort(event.column_key, key=key, reverse=reverse)

    @on(DataTable.RowSelected, ".layers")
    def open_sae(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(JobScreen(str(event.row_key.value)))

    def action_compare(self) -> None:
        self.app.push_screen(CompareScreen())


class JobScreen(SaeScreen):
    """One SAE: settings, every metric per eval with its gate verdict, training curves."""

    def __init__(self, sae_id: str):
        super().__init__()
        self.sae_id = sae_id

    def body(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="settings")
            yield DataTable(id="metrics", zebra_stripes=True)
            yield Static(id="notes")
            with Grid(id="curves"):
                for name in ("loss", "fvu", "l0", "dead_fraction"):
                    yield PlotextPlot(id=f"curve-{name}", classes="curve")

    def load(self) -> None:
        sae = self.view.sae(self.sae_id)
        report = self.view.report()
        row = next((r for m in report.models.values() for r in m.rows if r.sae_id == self.sae_id), None)
        if sae["source"] == "trained":
            k = f" k={sae['k']}" if sae["k"] is not None else ""
            settings = (f"{sae['arch']}{k} latents={sae['latents']} lr={sae['lr']:g} · batch {sae['batch_size']} × "
                        f"ctx {sae['ctx_len']} · {sae['train_tokens']:,} tokens of {sae['train_dataset']}")
        else:
            settings = f"imported {sae['source']} ({sae['arch']}, {sae['latents']} latents)"
        self.query_one("#settings", Static).update(Text(
            f"{sae['model']} ({sae['model_id']}) · layer {sae['layer']} {sae['hook']} · {settings}\n"
            f"status {sae['status']}" + (f" · {sae['error'].splitlines()[0]}" if sae["error"] else "")
            + f"\ncheckpoint: {sae['checkpoint_path'] or 'none'}"))
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        if row is not None:
            evals = sorted(row.evals, key=lambda name: (name == "absorption", name))  # dataset evals first
            table.add_columns("metric", *(Text(e) for e in evals))
            verdicts = {(g.eval_name, g.metric): g for g in row.gates}
            metrics = sorted({m for c in row.evals.values() for m in c.values})
            for metric in metrics:
                cells = []
                for name in evals:
                    value = row.evals[name].values.get(metric)
                    gate = verdicts.get((name, metric))
                    text = Text("n/a" if value is None else f"{value:.4g}")
                    if gate is not None and gate.passed is not None:
                        text.append(" ✓" if gate.passed else " ✗", style="green" if gate.passed else "red")
                    cells.append(text)
                table.add_row(metric, *cells)
            not_applicable = {g.metric: g.reason for g in row.gates if g.passed is None and g.metric not in metrics}
            for metric in sorted(not_applicable):
                table.add_row(metric, *[Text("n/a", style="dim") for _ in evals])
            reasons = Text("\n".join(f"{m} n/a: {r}" for m, r in sorted(not_applicable.items())), style="dim")
            self.query_one("#notes", Static).update(reasons)
        log = self.view.train_log(self.sae_id)
        tokens = [r["tokens"] for r in log]
        for name in ("loss", "fvu", "l0", "dead_fraction"):
            plot = self.query_one(f"#curve-{name}", PlotextPlot)
            plot.plt.clear_data()
            plot.plt.title(name)
            if log:
                plot.plt.plot(tokens, [r[name] for r in log])
                plot.plt.xlabel("tokens")
            plot.refresh()


class CompareScreen(SaeScreen):
    """Two models side by side: per-layer deltas and loss recovered by layer on one chart."""

    def body(self) -> ComposeResult:
        with Horizontal(id="pickers"):
            yield Select([], id="model-a", prompt="model A", allow_blank=True)
            yield Select([], id="model-b", prompt="model B", allow_blank=True)
        with VerticalScroll():
            yield DataTable(id="summary", zebra_stripes=True)
            yield DataTable(id="deltas", zebra_stripes=True)
            yield PlotextPlot(id="by-layer")

    def load(self) -> None:
        report = self.view.report()
        names = list(report.models)
        a, b = self.query_one("#model-a", Select), self.query_one("#model-b", Select)
        with self.prevent(Select.Changed):
            a.set_options((Text(n), n) for n in names)
            b.set_options((Text(n), n) for n in names)
            if len(names) >= 2:
                a.value = self.chosen[0] if getattr(self, "chosen", None) else names[0]
                b.value = self.chosen[1] if getattr(self, "chosen", None) else names[1]
        self.draw(report)

    @on(Select.Changed)
    def picked(self) -> None:
        a, b = self.query_one("#model-a", Select).value, self.query_one("#model-b", Select).value
        if isinstance(a, str) and isinstance(b, str):
            self.chosen = (a, b)
            self.draw(self.view.report())

    def draw(self, report: Report) -> None:
        a, b = self.query_one("#model-a", Select).value, self.query_one("#model-b", Select).value
        summary, deltas = self.query_one("#summary", DataTable), self.query_one("#deltas", DataTable)
        summary.clear(columns=True)
        deltas.clear(columns=True)
        plot = self.query_one("#by-layer", PlotextPlot)
        plot.plt.clear_data()
        if not (isinstance(a, str) and isinstance(b, str)):
            return
        comparison = compare(report, a, b)
        summary.add_columns("metric", Text(a), Text(b), Text(f"Δ ({b} − {a})"), "verdict")
        for s in comparison.summary:
            summary.add_row(*(Text(str(cell)) for cell in (s.label, s.a, s.b, s.delta, s.verdict)))
        deltas.add_columns("layer", "eval", *(Text(t) for t in (f"LR {a}", f"LR {b}", "Δ", "sig.", f"dead {a}",
                                                                f"dead {b}")))
        for d in comparison.layers:
            significant = d.significant("loss_recovered")
            delta = d.delta("loss_recovered")
            deltas.add_row(Text(d.label), Text(d.eval_name), pct(d.a.get("loss_recovered")), pct(d.b.get("loss_recovered")),
                           Text(points(d.a.get("loss_recovered"), d.b.get("loss_recovered")),
                                style="" if delta is None else ("green" if delta >= 0 else "red")),
                           "n/a" if significant is None else ("yes" if significant else "no"),
                           pct(d.a.get("dead_fraction")), pct(d.b.get("dead_fraction")))
        first_eval = report.eval_names[0] if report.eval_names else None
        plot.plt.title(f"loss recovered by layer ({first_eval})")
        for model in (a, b):
            rows = [r for r in report.models[model].rows if first_eval in r.evals]
            layers = [r.layer for r in rows]
            values = [r.evals[first_eval].get("loss_recovered") or 0.0 for r in rows]
            if layers:
                plot.plt.plot(layers, values, label=model, marker="hd")
        plot.plt.xlabel("layer")
        plot.refresh()


class SqlScreen(SaeScreen):
    """Type a query; it runs as `sae-bench sql` runs it (suite.store.readonly): read-only with
    external access off, and on a snapshot while a run writes the file."""

    def body(self) -> ComposeResult:
        yield Input(placeholder="select * from layer_summary limit 20", id="query")
        yield Static("", id="sql-error")
        yield DataTable(id="result", zebra_stripes=True)

    @on(Input.Submitted, "#query")
    def run_query(self, event: Input.Submitted) -> None:
        table = self.query_one("#result", DataTable)
        error = self.query_one("#sql-error", Static)
        table.clear(columns=True)
        try:
            result = run_query(self.view.store.path, event.value)
        except QueryRefused as exc:
            error.update(Text(str(exc), style="red"))
            return
        error.update(f"{len(result.rows)} row(s)" + (" (snapshot: a run is writing the file)" if result.snapshot
                                                     else ""))
        if result.names:  # Text, not str: DataTable reads str cells as markup
            table.add_columns(*(Text(name) for name in result.names))
            for row in result.rows:
                table.add_row(*(Text(sql_cell(v)) for v in row))


class MessageScreen(Screen):
    """Shown instead of a traceback: no file, an empty file, or several files to choose from."""

    BINDINGS = [Binding("q", "app.quit", "Quit")]

    def __init__(self, message: str, choices: list[Path] | None = None):
        super().__init__()
        self.message, self.choices = message, choices or []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.message, id="message")
        if self.choices:
            yield OptionList(*[str(p) for p in self.choices], id="choices")
        yield Footer()

    @on(OptionList.OptionSelected, "#choices")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.app.open_db(self.choices[event.option_index])  # type: ignore[attr-defined]


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield Static(
            "[b]sae-bench tui[/b]\n\n"
            "enter  open the selected run / SAE\n"
            "c      compare two models\n"
            "s      SQL console (read-only)\n"
            "r      refresh (also every 5 s on runs and layers)\n"
            "click  a layer-table header to sort by it\n"
            "esc    back          ?  this help          q  quit\n\n"
            "Health: green all gates pass, yellow at least half, red most failed.",
            id="help")


class SaeBenchApp(App):
    TITLE = "sae-bench"
    CSS = """
    .title { padding: 1 1 0 1; text-style: bold; }
    #curves { grid-size: 2; grid-rows: 12; height: auto; }
    .curve { height: 12; }
    #by-layer { height: 16; }
    #pickers { height: auto; }
    #pickers Select { width: 1fr; }
    DataTable { height: auto; max-height: 20; }
    #help { width: 60; height: auto; padding: 1 2; border: round $accent; background: $surface; }
    HelpScreen { align: center middle; }
    #message { padding: 1 2; }
    """

    def __init__(self, db: Path | None = None, search_dir: Path = Path("results")):
        super().__init__()
        self.db = db
        self.search_dir = search_dir
        self.view: StoreView | None = None

    def on_mount(self) -> None:
        if self.db is not None:
            self.open_db(self.db)
            return
        found = sorted(self.search_dir.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True)
        if len(found) == 1:
            self.open_db(found[0])
        elif found:
            self.push_screen(MessageScreen(f"Results files under {self.search_dir}/ — pick one:", found))
        else:
            self.push_screen(MessageScreen(
                f"No results yet: no .duckdb file under {self.search_dir}/.\n\n"
                "Run `sae-bench run specs/demo.toml`, or open a file with `sae-bench tui PATH`."))

    def open_db(self, path: Path) -> None:
        view = StoreView(path)
        try:
            view.store.check_schema()
            reconcile_if_idle(path)  # a killed run's rows read `interrupted`, not `running` forever
        except StoreError as exc:
            self.push_screen(MessageScreen(f"{exc}\n\nRun a spec into it with `sae-bench run SPEC --db {path}`."))
            return
        self.view = view
        if not self.view.runs():
            self.push_screen(MessageScreen(f"{path} has no runs yet."))
            return
        self.push_screen(RunsScreen())


def run_tui(db: str | None) -> int:
    SaeBenchApp(Path(db) if db else None).run()
    return 0
