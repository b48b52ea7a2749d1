"""Seeds aggregated: one row per layer with mean ± sample std, one verdict per layer under the
stated rule (every seed passes every gate), in every report format and `sae-bench gate`.
Numbers are checked against SQL over a real seeded run's DuckDB file."""

from __future__ import annotations

import json
import re
import shutil

import duckdb
import numpy as np
import pytest
from conftest import write_spec

from suite.cli import main
from suite.report import EvalCell, Gate, LayerRow, load_report
from suite.seeds import HEALTH_RULE, group_seeds, spread
from suite.store import Store

SEEDED_SPEC = """
[suite]
name = "seeded"
db = "{db}"

[models.base]
id = "builtin:tiny-base"
[models.finetune]
id = "builtin:tiny-finetune"

[grid]
models = ["base", "finetune"]
layers = [0, 2]

[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = 6_000
ctx_len = 64
batch_size = 8
lr = 1e-3
seed = [0, 1, 2]

[sae]
k = 24
latents = 96
dead_tokens = 2_000

[absorption]
enabled = false

[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 1_024
sparsity_tokens = 2_048
ctx_len = 64
batch_size = 8
"""


def sql(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory):
    directory = tmp_path_factory.mktemp("seeded")
    db = directory / "seeded.duckdb"
    spec = write_spec(directory, SEEDED_SPEC.format(db=db))
    assert main(["run", str(spec)]) == 0
    return db


def strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------ the aggregation itself


def _row(layer: int, seed: int, value: float, passed: bool) -> LayerRow:
    gate = Gate("e", "loss_recovered", ">=", 0.6, None, value, passed, None, False)
    return LayerRow(f"id{layer}{seed}", "m", "x", layer, "resid_post", "topk", 8, 32, 1e-3,
                    ("resid_post", "topk", 8, 32, 1e-3, 8, 64, 1000, seed, "d"), 1.0,
                    {"e": EvalCell({"loss_recovered": value}, {}, {})}, [gate], seed=seed)


def test_spread_is_the_sample_std_and_range():
    values = [0.91, 0.95, 0.80]
    s = spread([*values, None, float("nan")])
    assert s.n == 3 and s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1)) and (s.low, s.high) == (0.80, 0.95)
    assert spread([0.5]).std is None and spread([None]) is None


def test_one_group_per_layer_and_one_failing_seed_fails_the_layer():
    rows = [_row(layer, seed, 0.9, passed=not (layer == 1 and seed == 2)) for layer in (0, 1) for seed in (2, 0, 1)]
    groups = group_seeds(rows)
    assert [(g.layer, g.seeds) for g in groups] == [(0, [0, 1, 2]), (1, [0, 1, 2])]
    assert [g.healthy for g in groups] == [True, False]
    assert [g.healthy_seeds for g in groups] == [3, 2]
    assert "every seed" in HEALTH_RULE


# ------------------------------------------------------------------ a real seeded run


def _md(db, *extra) -> str:
    out = db.parent / "seeded.md"
    assert main(["report", str(db), "--format", "md", "-o", str(out), *extra]) == 0
    return out.read_text()


def _layer_rows(text: str, model: str) -> list[list[str]]:
    section = next(s for s in text.split("\n## ") if s.startswith(f"{model} ("))
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Layer | Seeds |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_markdown_has_one_row_per_layer_with_mean_and_std(seeded_db):
    text = _md(seeded_db)
    for model in ("base", "finetune"):
        rows = _layer_rows(text, model)
        expected = sql(seeded_db, "select layer, avg(loss_recovered), stddev_samp(loss_recovered), count(*), "
                                  "string_agg(seed::varchar, ', ' order by seed) from layer_summary "
                                  "where model = ? and eval_name = 'pyref' group by layer order by layer", [model])
        assert len(rows) == len(expected) == 2
        for row, (layer, avg, std, n, seeds) in zip(rows, expected):
            assert n == 3 and row[0] == str(layer) and row[1] == seeds
            assert row[2] == f"{100 * avg:.2f}% ±{100 * std:.2f}"
    assert HEALTH_RULE in text and "sample standard deviation" in text


def test_healthy_counts_layers_not_seeds(seeded_db, tmp_path):
    planted = tmp_path / "planted.duckdb"
    shutil.copy(seeded_db, planted)
    # one gate of one seed fails: its layer fails, the count drops by one layer (not one seed)
    with duckdb.connect(str(planted)) as con:
        (sae_id,) = con.execute("select sae_id from saes where model = 'base' and layer = 0 and seed = 1").fetchone()
        con.execute("update gates set passed = false where metric = 'l0' and score_id in "
                    "(select score_id from current_scores where sae_id = ?)", [sae_id])
    for db in (seeded_db, planted):
        expected = dict(sql(db, """
            select model, count(*) filter (where ok) from (
                select a.model, a.layer, bool_and(coalesce(g.passed, true)) as ok
                from saes a join current_scores s using (sae_id) join gates g using (score_id)
                group by all) group by model"""))
        report = load_report(Store(db))
        for model in ("base", "finetune"):
            assert report.models[model].healthy_count == expected[model]
            assert len(report.models[model].layers) == 2
        text = _md(db)
        for model in ("base", "finetune"):
            assert f"Fully healthy layers: {expected[model]}/2 (" in text
    text = _md(planted)
    (row,) = [r for r in _layer_rows(text, "base") if r[0] == "0"]
    assert "failed: l0 (pyref, seed 1)" in row[-1] and "seeds healthy 2/3" in row[-1]


def test_json_aggregates_and_keeps_every_seed(seeded_db):
    out = seeded_db.parent / "seeded.json"
    assert main(["report", str(seeded_db), "--compare", "base", "finetune", "--format", "json", "-o", str(out)]) == 0
    doc = strict_loads(out.read_text())
    assert doc["seeded"] is True
    stored = {(m, layer, seed): v for m, layer, seed, v in sql(
        seeded_db, "select model, layer, seed, explained_variance from layer_summary where eval_name = 'pyref'")}
    for model in doc["models"]:
        assert model["layers_total"] == 2
        for layer in model["layers"]:
            metric = layer["evals"]["pyref"]["explained_variance"]
            values = [stored[(model["name"], layer["layer"], s)] for s in (0, 1, 2)]
            assert [s["value"] for s in metric["seeds"]] == values
            assert metric["value"] == pytest.approx(np.mean(values))
            assert metric["std"] == pytest.approx(np.std(values, ddof=1))
            assert (metric["min"], metric["max"]) == (min(values), max(values)) and metric["ci"] is None
    deltas = doc["comparison"]["layers"]
    assert len(deltas) == 2 and all(d["loss_recovered"]["significant_seeds"]["compared"] == 3 for d in deltas)


def test_gate_summary_counts_layers(seeded_db, capsys):
    code = main(["gate", str(seeded_db)])
    out = capsys.readouterr().out
    healthy = sql(seeded_db, """select count(*) filter (where ok), count(*) from (
        select a.model, a.layer, bool_and(coalesce(g.passed, true)) as ok
        from saes a join current_scores s using (sae_id) join gates g using (score_id) group by all)""")[0]
    assert re.search(rf"{healthy[0]}/{healthy[1]} layers healthy", out)
    assert code in (0, 1)
    from suite.gates import load_checks

    names = {c.name for c in load_checks(seeded_db)}
    assert "seeded::base::layer0::seed1::pyref::l0" in names or any("::seed1::" in n for n in names)
    assert len(names) == len(load_checks(seeded_db))  # seeds tell the checks apart


def test_html_plots_seed_means_with_min_max_whiskers(seeded_db):
    from test_report_formats import assert_self_contained, parse

    out = seeded_db.parent / "seeded.html"
    assert main(["report", str(seeded_db), "--compare", "base", "finetune", "--format", "html", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    assert_self_contained(page, text)
    chart = "explained variance by layer (pyref)"
    for model in ("base", "finetune"):
        stored = sql(seeded_db, "select layer, avg(explained_variance), min(explained_variance), "
                                "max(explained_variance) from layer_summary where model = ? and eval_name = 'pyref' "
                                "group by layer order by layer", [model])
        points = page.points[chart][model]
        assert [x for x, _ in points] == [float(layer) for layer, *_ in stored]
        assert [y for _, y in points] == pytest.approx([avg for _, avg, _, _ in stored], rel=1e-12)
        assert page.whiskers[chart][model] == [(low, high) for _, _, low, high in stored]
    layers = [t for t in page.tables if t["kind"] == "layers"]
    assert [len(t["rows"]) - 1 for t in layers] == [2, 2]  # one row per layer, not per seed


# ------------------------------------------------------------------ `run`'s final tables


def _run_table_rows(db, width: int = 200) -> dict[str, list[list[str]]]:
    """The per-model tables `run` prints at its end, as cells, keyed by the model alias."""
    import io

    from rich.console import Console

    from suite.tables import model_tables

    sae_ids = [r[0] for r in sql(db, "select sae_id from saes")]
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    tables: dict[str, list[list[str]]] = {}
    for table in model_tables(Store(db), sae_ids, width):
        console.print(table)
        lines = console.export_text(clear=True).splitlines()
        model = next(line for line in lines if "(builtin:" in line).split()[0]
        tables[model] = [[c.strip() for c in line.strip().strip("│").split("│")]
                         for line in lines if line.strip().startswith("│") and "Layer" not in line]
    return tables


def test_run_tables_aggregate_seeds_one_row_and_one_verdict_per_layer(seeded_db, tmp_path):
    planted = tmp_path / "planted.duckdb"
    shutil.copy(seeded_db, planted)
    with duckdb.connect(str(planted)) as con:  # one seed of base layer 2 fails one gate: that layer fails
        con.execute("update gates set passed = false where metric = 'l0' and score_id in (select score_id from "
                    "current_scores c join saes a using (sae_id) where a.model = 'base' and a.layer = 2 "
                    "and a.seed = 2)")
    for db in (seeded_db, planted):
        tables = _run_table_rows(db)
        assert sorted(tables) == ["base", "finetune"]
        for model, rows in tables.items():
            expected = sql(db, """
                select layer, string_agg(seed::varchar, ',' order by seed), avg(loss_recovered),
                       stddev_samp(loss_recovered), avg(l0), stddev_samp(l0), avg(explained_variance),
                       stddev_samp(explained_variance)
                from layer_summary where model = ? and eval_name = 'pyref' group by layer order by layer""", [model])
            verdicts = dict(sql(db, """
                select layer, count(*) filter (where ok) || '/' || count(*) from (
                    select a.layer, g.metric, bool_and(g.passed) as ok
                    from saes a join current_scores s using (sae_id) join gates g using (score_id)
                    where a.model = ? and g.passed is not null group by all) group by layer""", [model]))
            assert len(rows) == len(expected) == 2  # one row per layer, not one per seed
            for row, (layer, seeds, lr, lr_sd, l0, l0_sd, ev, ev_sd) in zip(rows, expected):
                assert row[:3] == [str(layer), seeds, "pyref"]
                assert row[3] == f"{100 * lr:.2f}% ±{100 * lr_sd:.2f}"
                assert row[5] == f"{l0:.2f} ±{l0_sd:.2f}" and row[7] == f"{ev:.3f} ±{ev_sd:.3f}"
                assert row[-1].split()[0] == verdicts[layer]
    (failing,) = [r for r in _run_table_rows(planted)["base"] if r[0] == "2"]
    assert "✗ l0" in failing[-1] and "seeds 2/3" in failing[-1]


def test_pytest_plugin_summary_counts_layers_with_seeds_aggregated(seeded_db, tmp_path, pytester):
    """`pytest --sae-bench DB` ends with the file's `n/N layers healthy`, a layer counted once
    whatever its seeds (and one failing seed failing its layer), as SQL over the file counts."""
    planted = tmp_path / "planted.duckdb"
    shutil.copy(seeded_db, planted)
    with duckdb.connect(str(planted)) as con:
        con.execute("update gates set passed = false where metric = 'l0' and score_id in (select score_id from "
                    "current_scores c join saes a using (sae_id) where a.model = 'finetune' and a.layer = 0 "
                    "and a.seed = 1)")
    counts = []
    for db in (seeded_db, planted):
        healthy, total = sql(db, """select count(*) filter (where ok), count(*) from (
            select a.model, a.layer, bool_and(coalesce(g.passed, true)) as ok
            from saes a join current_scores s using (sae_id) join gates g using (score_id) group by all)""")[0]
        counts.append((healthy, total))
        result = pytester.runpytest_subprocess("--sae-bench", str(db), "-p", "no:cacheprovider", "-k", "layer2")
        summary = [line for line in result.stdout.lines if "layers healthy" in line]
        assert summary == [f"sae-bench {db.name}: {healthy}/{total} layers healthy "
                           f"(healthy: every applicable gate passes on every eval and every seed, seeds aggregated)"]
    was_healthy = sql(seeded_db, "select bool_and(coalesce(g.passed, true)) from saes a join current_scores s "
                                 "using (sae_id) join gates g using (score_id) where a.model = 'finetune' and a.layer = 0")
    assert counts[1] == (counts[0][0] - was_healthy[0][0], 4)  # one failing seed: one layer fewer, never a seed
