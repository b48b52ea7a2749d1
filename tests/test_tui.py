"""The Textual app through its Pilot on real results files, friendly screens, reading while
another process holds the file, and SVG snapshots of the main screens."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, OptionList, Select, Static
from textual_plotext import PlotextPlot

from tui.app import CompareScreen, HelpScreen, JobScreen, LayersScreen, MessageScreen, RunsScreen, SaeBenchApp
from tui_fixture import build

SIZE = (80, 24)


def sql(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def cell_text(value) -> str:
    return value.plain if isinstance(value, Text) else str(value)


async def test_every_screen_on_a_real_run(tiny_run):
    _, db, *_ = tiny_run
    app = SaeBenchApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        runs = app.screen.query_one("#runs", DataTable)
        assert runs.row_count == sql(db, "select count(*) from runs")[0][0]
        newest = sql(db, "select run_id, suite from runs order by started_at desc limit 1")[0]
        assert [cell_text(c) for c in runs.get_row_at(0)[:2]] == list(newest)

        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LayersScreen)
        base = app.screen.query_one("#layers-base", DataTable)
        assert base.row_count == 3
        sae_id = sql(db, "select sae_id from saes where model = 'base' and layer = 0")[0][0]
        row = next(base.get_row_at(i) for i in range(base.row_count) if cell_text(base.get_row_at(i)[0]) == "0")
        (recovered,) = sql(db, "select loss_recovered from layer_summary where sae_id = ? and eval_name = 'pylib'",
                           [sae_id])[0]
        assert cell_text(row[1]) == f"{100 * recovered:.2f}%"
        health = row[-1]
        passed = sql(db, "select count(*) from (select metric from gates join current_scores using (score_id) "
                         "where sae_id = ? and passed is not null group by metric having bool_and(passed))",
                     [sae_id])[0][0]
        assert health.plain == f"{passed}/3"
        assert health.style == {3: "bold green", 2: "bold yellow"}.get(passed, "bold red")

        # sorting by a column header orders the rows by that column
        await pilot.click(f"#layers-base", offset=(12, 0))
        await pilot.pause()
        values = [float(cell_text(base.get_row_at(i)[1]).rstrip("%")) for i in range(3)]
        assert values == sorted(values)

        base.focus()
        base.move_cursor(row=0)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        metrics = app.screen.query_one("#metrics", DataTable)
        rows = {cell_text(metrics.get_row_at(i)[0]): metrics.get_row_at(i) for i in range(metrics.row_count)}
        shown_job = app.screen.sae_id
        (value,) = sql(db, "select loss_recovered from layer_summary where sae_id = ? and eval_name = 'pylib'",
                       [shown_job])[0]
        assert cell_text(rows["loss_recovered"][1]).startswith(f"{value:.4g}")
        assert "absorption" in rows and cell_text(rows["absorption"][1]) == "n/a"
        assert "letters have a ground-truth probe F1" in str(app.screen.query_one("#notes", Static).render())
        curves = app.screen.query(PlotextPlot)
        assert len(curves) == 4 and sql(db, "select count(*) from train_log where sae_id = ?", [shown_job])[0][0] > 2

        await pilot.press("escape")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one("#model-a", Select).value == "base"
        assert app.screen.query_one("#summary", DataTable).row_count == 5
        assert app.screen.query_one("#deltas", DataTable).row_count == 6
        assert app.screen.query_one("#by-layer", PlotextPlot)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "escape", "escape")
        assert isinstance(app.screen, RunsScreen)

        await pilot.press("s")
        await pilot.pause()
        await pilot.click("#query")
        app.screen.query_one("#query", Input).value = "select model, count(*) as n from saes group by 1 order by 1"
        await pilot.press("enter")
        await pilot.pause()
        result = app.screen.query_one("#result", DataTable)
        assert [[cell_text(c) for c in result.get_row_at(i)] for i in range(result.row_count)] == [
            ["base", "3"], ["finetune", "3"]]
        app.screen.query_one("#query", Input).value = "delete from saes"
        await pilot.press("enter")
        await pilot.pause()
        assert "read-only" in str(app.screen.query_one("#sql-error", Static).render())
        await pilot.press("escape", "q")
    assert sql(db, "select count(*) from saes")[0][0] == 6


async def test_missing_empty_and_several_files(tmp_path):
    app = SaeBenchApp(tmp_path / "nope.duckdb")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "no results database" in str(app.screen.query_one("#message", Static).render())
    app = SaeBenchApp(None, search_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "No results yet" in str(app.screen.query_one("#message", Static).render())
    build(tmp_path / "one.duckdb")
    shutil.copy(tmp_path / "one.duckdb", tmp_path / "two.duckdb")
    app = SaeBenchApp(None, search_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        choices = app.screen.query_one("#choices", OptionList)
        assert choices.option_count == 2
        choices.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_reads_while_another_process_holds_the_writer(tmp_path):
    db = build(tmp_path / "held.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('holding', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException):
            duckdb.connect(str(db), read_only=True)  # a plain reader is locked out
        app = SaeBenchApp(db)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, RunsScreen)
            assert app.screen.query_one("#runs", DataTable).row_count == 1
            assert "snapshot" in app.screen.sub_title
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ snapshots (tests/__snapshots__)


@pytest.fixture(scope="module")
def snap_db(tmp_path_factory):
    return build(tmp_path_factory.mktemp("snap") / "snap.duckdb")


def test_snapshot_runs(snap_compare, snap_db):
    assert snap_compare(SaeBenchApp(snap_db), terminal_size=SIZE)


def test_snapshot_layers(snap_compare, snap_db):
    assert snap_compare(SaeBenchApp(snap_db), terminal_size=SIZE, press=["enter"])


def test_snapshot_job(snap_compare, snap_db):
    assert snap_compare(SaeBenchApp(snap_db), terminal_size=SIZE, press=["enter", "enter"])


def test_snapshot_compare(snap_compare, snap_db):
    assert snap_compare(SaeBenchApp(snap_db), terminal_size=SIZE, press=["c"])
