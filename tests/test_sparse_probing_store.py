"""Sparse probing in the store: a spec run writes a score per [probing.NAME] with its probes in a
table of their own, adding the eval trains nothing, the gate is stored, and schema-4 files
migrate to schema 5 (the new table, nothing else touched)."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from conftest import TINY_SPEC, write_spec
from suite.cli import main
from suite.store import SCHEMA_VERSION

PROBING = """
[probing.chapters]
dataset = {{ path = "builtin:pyref-chapters" }}
train_size = 120
test_size = 40
ctx_len = 64
k = [1, 5]

[health]
sae_top_1_test_accuracy = {{ min = 0.5 }}
"""


def rows(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def _spec_text(db, probing: bool) -> str:
    text = TINY_SPEC.replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [1, 2]").replace("[eval.pylib]", "[eval.pylib]\n") + \
        "\n[absorption]\nenabled = false\n"
    return (text + (PROBING if probing else "")).format(db=db)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A run without probing, then the same spec with [probing.chapters]: nothing retrained."""
    directory = tmp_path_factory.mktemp("probed")
    db = directory / "p.duckdb"
    assert main(["run", str(write_spec(directory, _spec_text(db, False)))]) == 0
    before = rows(db, "select sae_id, finished_at from saes order by 1")
    core_before = rows(db, "select score_id from scores order by 1")
    assert main(["run", str(write_spec(directory, _spec_text(db, True)))]) == 0
    return db, before, core_before


def test_adding_probing_scores_existing_saes_and_trains_nothing(probed):
    db, before, core_before = probed
    assert rows(db, "select sae_id, finished_at from saes order by 1") == before
    assert rows(db, "select score_id from scores where eval_kind = 'core' order by 1") == core_before
    assert rows(db, "select count(*), min(eval_name), min(metric_version) from current_scores "
                    "where eval_kind = 'sparse_probing'") == [(2, "chapters", "sparse_probing-2")]


def test_probe_rows_and_their_means_are_the_metrics(probed):
    db, *_ = probed
    probes = rows(db, "select score_id, class, inputs, k, accuracy, train_texts, test_texts from sparse_probing")
    classes = {r[1] for r in probes}
    assert classes == {"statements", "expressions", "data model", "built-in types", "lexical and execution"}
    # 2 SAEs x 5 classes x 2 inputs x (all dims, k=1, k=5); 60 training texts per class -> 120 per task
    assert len(probes) == 2 * 5 * 2 * 3 and {(r[5], r[6]) for r in probes} == {(120, 40)}
    assert all(0 <= r[4] <= 1 for r in probes)
    means = rows(db, """select p.score_id, p.inputs, p.k, avg(p.accuracy) from sparse_probing p group by all""")
    metrics = dict(((s, m), v) for s, m, v in rows(db, "select score_id, metric, value from metrics"))
    for score_id, inputs, k, mean in means:
        name = f"{inputs}_test_accuracy" if k is None else f"{inputs}_top_{k}_test_accuracy"
        assert metrics[(score_id, name)] == pytest.approx(mean)
    summary = rows(db, "select sae_top_1_test_accuracy, sae_top_2_test_accuracy from layer_summary "
                       "where eval_name = 'chapters'")
    assert len(summary) == 2 and all(v1 is not None and v2 is None for v1, v2 in summary)


def test_probing_gate_is_stored_on_the_probing_score(probed):
    db, *_ = probed
    gates = rows(db, "select s.eval_kind, g.metric, g.value, g.passed from gates g join scores s using (score_id) "
                     "where g.metric = 'sae_top_1_test_accuracy'")
    assert len(gates) == 2 and all(kind == "sparse_probing" and passed == (value >= 0.5)
                                   for kind, _, value, passed in gates)


def test_schema_4_file_migrates_to_5_with_the_probing_table(probed, tmp_path, capsys):
    db, *_ = probed
    old = tmp_path / "v4.duckdb"
    shutil.copy(db, old)
    with duckdb.connect(str(old)) as con:
        con.execute("drop view if exists health; drop view if exists layer_summary; drop view if exists current_scores")
        con.execute("drop table sparse_probing")
        con.execute("update meta set value = '4' where key = 'schema_version'")
    saes_before = rows(old, "select * from saes order by 1")
    assert main(["migrate", str(old)]) == 0
    assert f"from schema 4 to {SCHEMA_VERSION}" in " ".join(capsys.readouterr().out.split())
    assert rows(old, "select value from meta where key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert rows(old, "select count(*) from sparse_probing") == [(0,)]
    assert rows(old, "select * from saes order by 1") == saes_before
    layout = "select table_name, column_name, data_type from information_schema.columns order by all"
    assert rows(old, layout) == rows(db, layout)


def test_report_shows_the_stored_probing_numbers_per_layer(probed, capsys):
    db, *_ = probed
    assert main(["report", str(db), "--format", "md"]) == 0
    out = capsys.readouterr().out
    stored = rows(db, "select layer, llm_test_accuracy, sae_test_accuracy, sae_top_1_test_accuracy, "
                      "sae_top_5_test_accuracy from layer_summary where eval_name = 'chapters' order by layer")
    assert "| Layer | Dataset | LLM | SAE | SAE top 1 | SAE top 5 |" in out
    for layer, *values in stored:
        assert f"| {layer} | chapters | " + " | ".join(f"{v:.3f}" for v in values) + " |" in out


async def test_tui_sae_screen_shows_the_stored_probing_numbers_and_gate(probed):
    from rich.text import Text
    from textual.widgets import DataTable

    from tui.app import JobScreen, SaeBenchApp

    db, *_ = probed
    sae_id, value, passed = rows(db, "select s.sae_id, m.value, g.passed from current_scores s join metrics m "
                                     "using (score_id) join gates g using (score_id, metric) where s.eval_name = "
                                     "'chapters' and m.metric = 'sae_top_1_test_accuracy' order by 1 limit 1")[0]
    app = SaeBenchApp(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(JobScreen(sae_id))
        await pilot.pause()
        table = app.screen.query_one("#metrics", DataTable)
        headers = [str(c.label) for c in table.columns.values()]
        assert headers == ["metric", "pylib", "pyref", "chapters"]  # dataset evals, then probing
        cells = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        shown = cells["sae_top_1_test_accuracy"][3]
        text = shown.plain if isinstance(shown, Text) else str(shown)
        assert text == f"{value:.4g}" + (" ✓" if passed else " ✗")
        assert {"llm_test_accuracy", "sae_test_accuracy", "sae_top_5_test_accuracy"} <= set(cells)
