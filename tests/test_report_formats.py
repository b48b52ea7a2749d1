"""The html, json and rich reports of a real run: parsed (html.parser, a strict JSON parser) and
every number checked against independent SQL over the DuckDB file."""

from __future__ import annotations

import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from rich.cells import cell_len
from rich.console import Console

from suite.cli import build_parser, main
from suite.cli.results import cmd_report
from suite.report import compare, load_report
from suite.report_format import TableBlock, report_blocks
from suite.store import Store

DOCS = Path(__file__).resolve().parents[1] / "docs"


def sql(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


class Page(HTMLParser):
    """Tables (with their data-kind/data-model), chart points and every tag and attribute seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self.points: dict[str, dict[str, list[tuple[float, float]]]] = {}  # chart -> series -> (x, y)
        self.bars: dict[str, dict[str, list[tuple[str, int]]]] = {}
        self.whiskers: dict[str, dict[str, list[tuple[float, float]]]] = {}
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._row_class: str | None = None
        self._chart = self._series = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self.tables.append({"kind": a.get("data-kind"), "model": a.get("data-model"), "rows": [],
                                "classes": []})
        elif tag == "tr":
            self._row, self._row_class = [], a.get("class")
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figure":
            self._chart = a["data-chart"]
        elif tag == "g" and "data-series" in a:
            self._series = a["data-series"]
        elif tag == "circle" and "data-y" in a:
            self.points.setdefault(self._chart, {}).setdefault(self._series, []).append(
                (float(a["data-x"]), float(a["data-y"])))
        elif tag == "line" and "data-low" in a:
            self.whiskers.setdefault(self._chart, {}).setdefault(self._series, []).append(
                (float(a["data-low"]), float(a["data-high"])))
        elif tag == "rect" and "data-bin" in a:
            self.bars.setdefault(self._chart, {}).setdefault(self._series, []).append(
                (a["data-bin"], int(a["data-y"])))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)
            self.tables[-1]["classes"].append(self._row_class)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def html(tiny_run, tmp_path_factory):
    _, db, *_ = tiny_run
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert main(["report", str(db), "--compare", "base", "finetune", "--format", "html", "-o", str(out)]) == 0
    return db, out.read_text(encoding="utf-8")


def assert_self_contained(page: Page, text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for _, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), name
            assert name not in ("src", "href") or (value or "").startswith("#"), (name, value)
    assert "url(" not in text and "@import" not in text


def test_html_is_one_self_contained_page(html):
    _, text = html
    assert_self_contained(parse(text), text)


def test_html_tables_equal_the_store(html):
    db, text = html
    page = parse(text)
    layers = {t["model"]: t for t in page.tables if t["kind"] == "layers"}
    assert set(layers) == {"base", "finetune"}
    for model, table in layers.items():
        header, *rows = table["rows"]
        evals = [re.fullmatch(r"Loss recovered \((.+)\)", h)[1] for h in header if h.startswith("Loss recovered")]
        assert evals == ["pylib", "pyref"]
        for row, verdict in zip(rows, table["classes"][1:]):
            layer = int(row[0])
            for column, eval_name in enumerate(evals, start=1):
                value, low, high = sql(db, "select loss_recovered, loss_recovered_ci_low, loss_recovered_ci_high "
                                           "from layer_summary where model = ? and layer = ? and eval_name = ?",
                                       [model, layer, eval_name])[0]
                assert row[column] == f"{100 * value:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"
            passed, total = sql(db, """
                select count(distinct metric) filter (where metric not in (select metric from gates g2
                    join current_scores c2 using (score_id) where c2.sae_id = a.sae_id and g2.passed = false)),
                       count(distinct metric)
                from saes a join current_scores c using (sae_id) join gates g using (score_id)
                where a.model = ? and a.layer = ? and g.passed is not null""", [model, layer])[0]
            assert re.search(r"(\d+)/(\d+)", row[-1]).groups() == (str(passed), str(total))
            assert verdict == ("healthy" if passed == total else "partial" if 2 * passed >= total else "unhealthy")
    summary = next(t for t in page.tables if t["kind"] == "summary")
    mean_row = next(r for r in summary["rows"] if r[0] == "Mean loss recovered")
    for column, model in ((1, "base"), (2, "finetune")):
        (avg,) = sql(db, "select avg(loss_recovered) from layer_summary where model = ? and eval_kind = 'core'",
                     [model])[0]
        assert mean_row[column] == f"{100 * avg:.2f}%"
    deltas = next(t for t in page.tables if t["kind"] == "deltas")
    for layer, eval_name, a_cell, b_cell, delta, significant, *_ in deltas["rows"][1:]:
        (a, a_lo, a_hi), (b, b_lo, b_hi) = [sql(db, "select loss_recovered, loss_recovered_ci_low, "
                                                    "loss_recovered_ci_high from layer_summary where model = ? and "
                                                    "layer = ? and eval_name = ?", [m, int(layer), eval_name])[0]
                                            for m in ("base", "finetune")]
        assert delta == f"{100 * (b - a):+.2f} pts"
        assert significant == ("yes" if a_hi < b_lo or b_hi < a_lo else "no")


def test_core_metrics_table_equals_the_store(html):
    db, text = html
    page = parse(text)
    tables = [t for t in page.tables if t["kind"] == "core"]
    assert {t["model"] for t in tables} == {"base", "finetune"}
    for table in tables:
        header, *rows = table["rows"]
        assert header[:4] == ["Layer", "Eval", "KL score", "Expl. var."]
        assert len(rows) == 6  # 3 layers x 2 evals
        for layer, eval_name, kl, ev, cossim, *_ in rows:
            stored = sql(db, "select kl_score, explained_variance, cossim from layer_summary where model = ? and "
                             "layer = ? and eval_name = ?", [table["model"], int(layer), eval_name])[0]
            assert [kl, ev, cossim] == [f"{v:.3f}" for v in stored]


def test_html_charts_plot_the_stored_values(html):
    db, text = html
    page = parse(text)
    for eval_name in ("pylib", "pyref"):
        chart = page.points[f"loss recovered by layer ({eval_name})"]
        assert set(chart) == {"base", "finetune"}
        for model, points in chart.items():
            stored = sql(db, "select layer, loss_recovered from layer_summary where model = ? and eval_name = ? "
                             "order by layer", [model, eval_name])
            assert points == [(float(layer), value) for layer, value in stored]
    curves = page.points["base: training loss while training"]
    assert len(curves) == 3
    for name, points in curves.items():
        layer = int(re.fullmatch(r"layer (\d+)", name)[1])
        stored = sql(db, "select tokens, loss from train_log join saes using (sae_id) where model = 'base' "
                         "and layer = ? order by step", [layer])
        assert points == [(float(t), loss) for t, loss in stored] and len(points) > 2
    bars = page.bars["finetune: latent firing frequency (pyref)"]
    for name, counts in bars.items():
        layer = int(re.fullmatch(r"layer (\d+)", name)[1])
        stored = sql(db, "select d.latents from latent_density d join current_scores c using (score_id) join saes a "
                         "using (sae_id) where a.model = 'finetune' and a.layer = ? and c.eval_name = 'pyref' "
                         "order by bin", [layer])
        assert [c for _, c in counts] == [n for (n,) in stored]
        assert sum(c for _, c in counts) == 96  # every latent is in one bin


def test_html_escapes_user_text(tiny_run, tmp_path):
    _, db, *_ = tiny_run
    hostile = tmp_path / "hostile.duckdb"
    shutil.copy(db, hostile)
    name = '<script>alert("x")</script><img src=x onerror=1>'
    with duckdb.connect(str(hostile)) as con:
        con.execute("update saes set model = ? where model = 'base'", [name])
    out = tmp_path / "hostile.html"
    assert main(["report", str(hostile), "--compare", name, "finetune", "--format", "html", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    assert_self_contained(page, text)
    assert name in "".join(page.text)  # shown as text, never as markup


def test_json_is_strict_and_equals_the_store(tiny_run, tmp_path):
    _, db, *_ = tiny_run
    planted = tmp_path / "nan.duckdb"
    shutil.copy(db, planted)
    with duckdb.connect(str(planted)) as con:  # a NaN in the store must come out as null with a reason
        con.execute("update metrics set value = 'NaN'::double where metric = 'kl_score' and score_id = "
                    "(select min(score_id) from current_scores where eval_kind = 'core')")
    out = tmp_path / "report.json"
    assert main(["report", str(planted), "--compare", "base", "finetune", "--format", "json", "-o", str(out)]) == 0
    doc = strict_loads(out.read_text(encoding="utf-8"))
    assert doc["format"] == "sae-bench report" and doc["version"] == 1 and doc["seeded"] is False
    stored = {(m, layer, e, metric): v for m, layer, e, metric, v in sql(planted, """
        select a.model, a.layer, c.eval_name, m.metric, m.value from metrics m join current_scores c using (score_id)
        join saes a using (sae_id)""")}
    seen, nulls = set(), 0
    for model in doc["models"]:
        for layer in model["layers"]:
            for eval_name, metrics in layer["evals"].items():
                for metric, entry in metrics.items():
                    value = stored.get((model["name"], layer["layer"], eval_name, metric))
                    if value is None or value != value:
                        assert entry["value"] is None and entry["reason"], (metric, entry)
                        nulls += 1
                    else:
                        assert entry["value"] == value and entry["reason"] is None
                        assert entry["seeds"][0]["value"] == value and entry["n"] == 1 and entry["std"] is None
                    seen.add((model["name"], layer["layer"], eval_name, metric))
    assert set(stored) <= seen and nulls >= 1
    cis = {(m, layer, e): (lo, hi) for m, layer, e, lo, hi in sql(
        planted, "select model, layer, eval_name, loss_recovered_ci_low, loss_recovered_ci_high from layer_summary")}
    for d in doc["comparison"]["layers"]:
        lr = d["loss_recovered"]
        assert tuple(lr["a_ci"]) == cis[("base", d["layer"], d["eval"])]
        assert lr["delta"] == pytest.approx(lr["b"] - lr["a"])
        assert lr["significant"] == (lr["a_ci"][1] < lr["b_ci"][0] or lr["b_ci"][1] < lr["a_ci"][0])
    healthy = sql(planted, "select count(*) from (select a.layer from saes a join current_scores c using (sae_id) "
                           "join gates g using (score_id) where a.model = 'base' and g.passed is not null "
                           "group by a.layer having bool_and(g.passed))")[0][0]
    assert doc["comparison"]["healthy_layers"]["a"] == healthy == doc["models"][0]["healthy_layers"]


def test_json_schema_is_documented():
    doc = (DOCS / "report.md").read_text()
    for key in ("version", "models", "layers", "evals", "seeds", "reason", "comparison", "significant_seeds",
                "healthy_layers", "std", "gates_passed"):
        assert f"`{key}`" in doc, key


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "tty"])
@pytest.mark.parametrize("width", [80, 200])
def test_rich_report_fits_the_width(tiny_run, monkeypatch, capsys, width, tty):
    _, db, *_ = tiny_run
    args = ["report", str(db), "--compare", "base", "finetune"]
    if tty:  # a terminal of that width: colours on, the same layout
        console = Console(force_terminal=True, width=width, record=True, file=io.StringIO(), emoji=False)
        assert cmd_report(build_parser().parse_args(args), console) == 0
        assert "\x1b[" in console.file.getvalue()
        out = console.export_text()
    else:
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(args) == 0
        out = capsys.readouterr().out
    assert max(cell_len(line) for line in out.splitlines()) <= width
    assert "…" not in out  # nothing cut
    for needed in ("builtin:tiny-base", "builtin:tiny-finetune", "Fully healthy layers"):
        assert needed in out
    # no header cut: no word of the output is a cut-off header word (`recover` of `recovered`, `pyr` of `pyref`)
    report = load_report(Store(db))
    headers = [h for b in report_blocks(report, compare(report, "base", "finetune")) if isinstance(b, TableBlock)
               for h in b.headers]
    header_words = {w for h in headers for w in re.findall(r"[A-Za-z0-9%]+", h)}
    words = set(re.findall(r"[A-Za-z0-9%]+", out))
    cut = {(t, w) for t in words for w in header_words if t != w and len(t) >= 3 and w.startswith(t)}
    assert not cut
    (avg,) = sql(db, "select avg(loss_recovered) from layer_summary where model = 'base' and eval_kind = 'core'")[0]
    assert f"{100 * avg:.2f}%" in out
    if width == 200:
        assert "Loss recovered (pylib)" in out  # a table, not records
def test_committed_demo_html_matches_the_committed_markdown():
    """docs/demo-report.html and .md come from one run (docs/make-demo-report.sh): same cells."""
    text = (DOCS / "demo-report.html").read_text(encoding="utf-8")
    page = parse(text)
    assert_self_contained(page, text)
    md = (DOCS / "demo-report.md").read_text(encoding="utf-8")
    md_rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in md.splitlines()
               if line.startswith("| ") and not line.startswith("|---")]
    html_rows = [row for t in page.tables for row in t["rows"]]
    assert len(html_rows) == len(md_rows) > 10
    assert [r for r in html_rows] == [[c.replace("\\|", "|") for c in r] for r in md_rows]
    assert len(page.points) >= 5 and page.bars


def test_committed_demo_json_is_strict_and_matches_the_html():
    doc = strict_loads((DOCS / "demo-report.json").read_text(encoding="utf-8"))
    page = parse((DOCS / "demo-report.html").read_text(encoding="utf-8"))
    layers = {t["model"]: t["rows"] for t in page.tables if t["kind"] == "layers"}
    assert doc["version"] == 1 and {m["name"] for m in doc["models"]} == set(layers)
    for model in doc["models"]:
        header, *rows = layers[model["name"]]
        column = header.index("Loss recovered (pyref)")
        for layer, row in zip(model["layers"], rows):
            entry = layer["evals"]["pyref"]["loss_recovered"]
            low, high = entry["ci"]
            assert row[0] == str(layer["layer"])
            assert row[column] == f"{100 * entry['value']:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"
