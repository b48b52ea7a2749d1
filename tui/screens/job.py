"""One SAE: its settings, every metric per eval with its gate verdict, and training curves."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from tui.screens.base import DataScreen
from tui.view import SaeScores
from tui.widgets.charts import draw_lines

CURVES = ("loss", "fvu", "l0", "dead_fraction")


def describe(sae: dict) -> Text:
    if sae["source"] == "trained":
        k = f" k={sae['k']}" if sae["k"] is not None else ""
        settings = (f"{sae['arch']}{k} latents={sae['latents']} lr={sae['lr']:g} seed {sae['seed']} · batch "
                    f"{sae['batch_size']} × ctx {sae['ctx_len']} · {sae['train_tokens']:,} tokens of "
                    f"{sae['train_dataset']}")
    else:
        settings = f"imported {sae['source']} ({sae['arch']}, {sae['latents']} latents)"
    error = f" · {sae['error'].splitlines()[0]}" if sae["error"] else ""
    return Text(f"{sae['model']} ({sae['model_id']}) · layer {sae['layer']} {sae['hook']} · {settings}\n"
                f"id {sae['sae_id']} · status {sae['status']}{error}\n"
                f"checkpoint: {sae['checkpoint_path'] or 'none'}")


class JobScreen(DataScreen):
    """One SAE; opened from a layer with several seeds, `n` steps through them."""

    BINDINGS = DataScreen.BINDINGS + [Binding("n", "next_seed", "Next seed")]

    def __init__(self, sae_id: str, *seeds: str):
        super().__init__()
        self.sae_ids = [sae_id, *seeds]  # the layer's SAEs, one per seed
        self.sae_id = sae_id

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return len(self.sae_ids) > 1 if action == "next_seed" else True

    def action_next_seed(self) -> None:
        self.sae_id = self.sae_ids[(self.sae_ids.index(self.sae_id) + 1) % len(self.sae_ids)]
        self.action_refresh()

    def body(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="settings")
            yield DataTable(id="metrics", zebra_stripes=True)
            yield Static(id="notes")
            with Grid(id="curves"):
                for name in CURVES:
                    yield PlotextPlot(id=f"curve-{name}", classes="curve")

    def fetch(self) -> tuple[str, dict | None, SaeScores, list[dict]]:
        sae_id = self.sae_id
        with self.view.session():  # one state of the file for the whole screen
            return sae_id, self.view.sae(sae_id), self.view.scores(sae_id), self.view.train_log(sae_id)

    def draw(self, data: tuple[str, dict | None, SaeScores, list[dict]]) -> None:
        sae_id, sae, scores, log = data
        if sae is None:
            self.query_one("#settings", Static).update(Text(f"SAE {sae_id} is no longer in the file"))
            return
        text = describe(sae)
        if len(self.sae_ids) > 1:
            text.append(f"\nseed {self.sae_ids.index(sae_id) + 1} of {len(self.sae_ids)} of this layer (n: next)")
        self.query_one("#settings", Static).update(text)
        self.show_metrics(scores)
        tokens = [r["tokens"] for r in log]
        for name in CURVES:
            draw_lines(self.query_one(f"#curve-{name}", PlotextPlot), name, "tokens",
                       [(None, tokens, [r[name] for r in log])])

    def show_metrics(self, scores: SaeScores) -> None:
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        # dataset evals first, then absorption, then the sparse-probing datasets
        evals = sorted(scores.values, key=lambda name: (scores.kinds.get(name) == "sparse_probing",
                                                        name == "absorption", name))
        table.add_columns("metric", *(Text(e) for e in evals))
        verdicts = {(g.eval_name, g.metric): g for g in scores.gates}
        metrics = sorted({m for values in scores.values.values() for m in values})
        for metric in metrics:
            cells = []
            for name in evals:
                value = scores.values[name].get(metric)
                gate = verdicts.get((name, metric))
                text = Text("n/a" if value is None or math.isnan(value) else f"{value:.4g}")
                if gate is not None and gate.passed is not None:
                    text.append(" ✓" if gate.passed else " ✗", style="green" if gate.passed else "red")
                cells.append(text)
            table.add_row(metric, *cells)
        not_applicable = {g.metric: g.reason for g in scores.gates if g.passed is None and g.metric not in metrics}
        for metric in sorted(not_applicable):
            table.add_row(metric, *[Text("n/a", style="dim") for _ in evals])
        reasons = Text("\n".join(f"{m} n/a: {r}" for m, r in sorted(not_applicable.items())), style="dim")
        self.query_one("#notes", Static).update(reasons)
