"""A grid with a seed axis in the TUI: one row per layer with the across-seed mean ± sample std,
one verdict per layer (every seed must pass), Enter opens the layer's seeds. Checked against
DuckDB's own aggregates over the stored per-seed values."""

from __future__ import annotations

import duckdb
import pytest
from rich.text import Text

from tui.app import JobScreen, LayersScreen, SaeBenchApp
from tui.widgets.table import KeyedTable
from tui_fixture import build

SEEDS = [0, 1, 2]


def sql(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return build(tmp_path_factory.mktemp("seeds") / "seeds.duckdb", seeds=SEEDS)


async def test_one_row_per_layer_with_mean_spread_and_one_verdict(seeded):
    db = seeded
    app = SaeBenchApp(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LayersScreen)
        for model in ("base", "tuned"):
            table = app.screen.query_one(f"#layers-{model}", KeyedTable)
            assert table.max_scroll_x == 0
            stats = sql(db, """
                select s.layer, avg(m.value), stddev_samp(m.value), count(*) from saes s
                join current_scores c using (sae_id) join metrics m using (score_id)
                where s.model = ? and c.eval_name = 'news' and m.metric = 'loss_recovered'
                group by s.layer order by s.layer""", [model])
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert [plain(r[0]) for r in rows] == [str(layer) for layer, *_ in stats]  # one row per layer
            for row, (layer, avg, std, n) in zip(rows, stats):
                assert n == len(SEEDS)
                assert plain(row[1]) == f"{100 * avg:.1f}±{100 * std:.1f}%", layer
            verdicts = sql(db, """
                select s.layer, count(*) filter (where ok), count(*) from (
                    select s.layer, g.metric, bool_and(g.passed) as ok from saes s
                    join current_scores c using (sae_id) join gates g using (score_id)
                    where s.model = ? and g.passed is not null group by all) s
                group by s.layer order by s.layer""", [model])
            assert [plain(r[-1]) for r in rows] == [f"{ok}/{total}" for _, ok, total in verdicts]
            healthy = sum(ok == total for _, ok, total in verdicts)
            title = str(app.screen.query_one(f"#title-{model}").render())
            assert f"{healthy}/{len(verdicts)} layers fully healthy (3 seeds each)" in title
        # base layer 6 passes every gate at seeds 0 and 1 but not at seed 2: the layer is not healthy
        base = app.screen.query_one("#layers-base", KeyedTable)
        assert plain(base.get_row_at(1)[-1]) == "2/3"

        base.focus()
        base.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        ids = [i for (i,) in sql(db, "select sae_id from saes where model = 'base' and layer = 6 order by seed")]
        assert app.screen.sae_ids == ids and app.screen.sae_id == ids[0]
        seen = []
        for _ in SEEDS:
            seen.append(sql(db, "select seed from saes where sae_id = ?", [app.screen.sae_id])[0][0])
            assert f"id {app.screen.sae_id}" in str(app.screen.query_one("#settings").render())
            await pilot.press("n")
            await pilot.pause()
        assert seen == SEEDS and app.screen.sae_id == ids[0]
