"""The layer tables at scale: computed in one DuckDB query (tui.layer_query) they must equal
what suite.report and suite.seeds compute in Python; past a page of rows the table pages."""

from __future__ import annotations

import math

import pytest
from rich.text import Text

from suite.report import load_report
from tui.app import LayersScreen, SaeBenchApp
from tui.cells import layer_label, varying_settings
from tui.layer_query import group_label, load_layer_tables
from tui.view import StoreView
from tui.widgets.table import KeyedTable
from tui_fixture import add_sae, build


def plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9,
                                                                                         abs_tol=1e-12))


@pytest.mark.parametrize("seeds", [None, [0, 1, 2]], ids=["one-seed", "three-seeds"])
def test_layer_query_equals_the_report(tmp_path, seeds):
    db = build(tmp_path / "eq.duckdb", seeds=seeds)
    add_sae(db, "tuned", 4, 0.70, 0.2)  # a layer the other model lacks
    with duckdb_rw(db) as con:  # a failed SAE and a k axis: labels name k, failures are listed
        con.execute("update saes set status = 'failed', error = 'diverged\nat step 3' where model = 'base' "
                    "and layer = 10 and coalesce(seed, 0) = 0")
        con.execute("update saes set k = 64 where model = 'tuned' and layer = 2")
    view = StoreView(db)
    report = load_report(view.store)
    rows = [r for m in report.models.values() for r in m.rows]
    axes = varying_settings(rows)
    for eval_name in report.eval_names:
        with view.session():
            tables = load_layer_tables(view.store, eval_name)
        assert tables.eval_names == report.eval_names and tables.eval_name == eval_name
        assert tables.axes == axes
        assert [m.name for m in tables.models] == list(report.models)
        for model in tables.models:
            expected = report.models[model.name]
            assert model.model_id == expected.model_id
            assert model.failures == expected.failed_jobs
            assert model.healthy_count == expected.healthy_count
            assert len(model.groups) == len(expected.layers)
            for got, group in zip(model.groups, expected.layers):
                assert got["sae_ids"] == group.sae_ids
                assert group_label(got, tables.axes) == layer_label(group.first, axes)
                assert (got["passed"], got["total"]) == (len(group.passed_everywhere()), len(group.gate_metrics()))
                for metric in ("loss_recovered", "explained_variance", "l0", "dead_fraction"):
                    stat = group.stat(eval_name, metric)
                    assert close(got[metric], stat.mean if stat else None), metric
                    assert close(got[f"{metric}_sd"], stat.std if stat else None), metric


def duckdb_rw(db):
    import duckdb

    return duckdb.connect(str(db))


async def test_big_tables_page_and_sort_across_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(KeyedTable, "PAGE_SIZE", 2)
    db = build(tmp_path / "pages.duckdb")
    app = SaeBenchApp(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LayersScreen)
        table = app.screen.query_one("#layers-base", KeyedTable)
        title = app.screen.query_one("#title-base")
        table.focus()
        assert [plain(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["2", "6"]
        assert "rows 1–2 of 3" in str(title.render())
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert [plain(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["10"]
        assert "rows 3–3 of 3" in str(title.render())
        await pilot.press("o", "o")  # sort every row by loss recovered, ascending: 10 comes first
        await pilot.pause()
        assert table.page == 0 and plain(table.get_row_at(0)[0]) == "10"  # the cursor's row, followed
        assert table.cursor_key == table.row_keys()[0]
        await pilot.press("right_square_bracket")
        assert [plain(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["2"]
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert table.page == 0 and [plain(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["10", "6"]
