"""The TUI while a run writes its file, across refreshes, in its help and at 80x24: the real app
through its Pilot on real DuckDB files, checked against the file with plain SQL."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import DataTable, Static

import tui.screens.base
from tui.app import SCREEN_REGISTRY, CompareScreen, HelpScreen, JobScreen, LayersScreen, RunsScreen, SaeBenchApp
from tui.screens.base import DataScreen
from suite.store.readonly import open_readonly
from tui.widgets.table import KeyedTable
from tui_fixture import add_sae, build

SIZE = (80, 24)
FIXTURE = Path(__file__).with_name("tui_fixture.py")


def sql(db, query, params=None):
    """The test's own reads; with the readers' configuration, as the app's refresh thread may
    hold a connection to the file at the same time (DuckDB wants one configuration per process)."""
    with open_readonly(db) as con:
        return con.execute(query, params or []).fetchall()


def plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


@pytest.fixture
def notices(monkeypatch):
    """Every notification a screen raises (a failed refresh shows as one)."""
    seen: list[str] = []
    original = DataScreen.notify

    def record(self, message, **kwargs):
        seen.append(str(message))
        return original(self, message, **kwargs)

    monkeypatch.setattr(DataScreen, "notify", record)
    return seen


def done_rows(db, model: str, eval_name: str) -> dict[str, float | None]:
    """layer -> loss recovered on `eval_name` (None when not scored yet), for done SAEs."""
    return dict(sql(db, """
        select s.layer::varchar, m.value from saes s
        left join current_scores c on c.sae_id = s.sae_id and c.eval_name = ?
        left join metrics m on m.score_id = c.score_id and m.metric = 'loss_recovered'
        where s.model = ? and s.status = 'done'""", [eval_name, model]))


def shown_loss(table: KeyedTable) -> dict[str, str]:
    """layer -> the loss recovered shown."""
    return {plain(table.get_row(key)[0]): plain(table.get_row(key)[1]) for key in table.row_keys()}


def shown_layers(table: KeyedTable) -> list[str]:
    return [plain(table.get_row(key)[0]) for key in table.row_keys()]


def cursor_sae(screen: LayersScreen, table: KeyedTable) -> list[str]:
    return screen.groups[table.cursor_key]


def expected_loss(rows: dict[str, float | None]) -> dict[str, str]:
    return {k: "n/a" if v is None else f"{100 * v:.2f}%" for k, v in rows.items()}


async def test_a_run_writing_while_the_app_is_open(tmp_path, monkeypatch, notices):
    """A second run registers, trains, scores, fails one SAE, holds the file and finishes while
    the layers screen refreshes itself (in its worker thread) every 0.3 s: every state shown equals the file, the user's
    cursor and sort stay put, nothing crashes and no refresh fails."""
    monkeypatch.setattr(tui.screens.base, "REFRESH_SECONDS", 0.3)
    db = build(tmp_path / "live.duckdb")
    old_run = sql(db, "select run_id from runs")[0][0]
    app = SaeBenchApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LayersScreen)
        base = screen.query_one("#layers-base", KeyedTable)
        base.focus()
        await pilot.press("o", "o", "O")  # sort by layer, then by loss recovered, then reverse it
        assert (base.sort_column, base.sort_reverse) == ("loss_recovered", True)
        layer6 = sql(db, "select sae_id from saes where model = 'base' and layer = 6")[0][0]
        base.move_cursor(row=shown_layers(base).index("6"))
        base_order = [k for k, _ in sorted(done_rows(db, "base", "news").items(), key=lambda kv: -kv[1])]

        writer = await asyncio.create_subprocess_exec(
            sys.executable, str(FIXTURE), "late", str(db), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env={"PYTHONPATH": ":".join(sys.path)})
        steps, snapshots = [], 0
        try:
            while True:
                line = (await asyncio.wait_for(writer.stdout.readline(), 60)).decode().strip()
                if not line:
                    break
                steps.append(line)
                screen.action_refresh()
                await pilot.pause()
                if line == "holding":  # another process holds the file: the app reads a snapshot
                    assert "snapshot" in screen.sub_title
                    snapshots += 1
                else:
                    assert "snapshot" not in screen.sub_title
                    late = screen.query("#layers-late")
                    shown = shown_loss(late.first(KeyedTable)) if late else {}
                    assert shown == expected_loss(done_rows(db, "late", "news")), line
                assert isinstance(app.screen, LayersScreen)
                assert shown_layers(base) == base_order and cursor_sae(screen, base) == [layer6], line
                writer.stdin.write(b"\n")
                await writer.stdin.drain()
        finally:
            if writer.returncode is None:
                writer.kill()
            await writer.wait()
        assert writer.returncode == 0 and steps[-1] == "finished" and snapshots == 1
        assert len(steps) == 15
        late = screen.query_one("#layers-late", KeyedTable)
        assert shown_loss(late) == expected_loss(done_rows(db, "late", "news"))
        assert shown_layers(late) == ["2", "6"]  # layer 10 failed: named in the title, not a row
        title = str(screen.query_one("#title-late").render())
        assert "layer 10: failed: loss diverged at step 40" in title
        assert (base.sort_column, base.sort_reverse) == ("loss_recovered", True)

        await pilot.press("escape")
        await pilot.pause()
        runs = app.screen.query_one("#runs", KeyedTable)
        assert isinstance(app.screen, RunsScreen)
        assert runs.row_keys() == [r for (r,) in sql(db, "select run_id from runs order by started_at desc")]
        assert runs.cursor_key == old_run  # the new run came in above it; the cursor stayed on it
        new_run = runs.row_keys()[0]
        assert plain(runs.get_row(new_run)[3]) == "finished" and plain(runs.get_row(new_run)[4]) == "2/3"
    assert notices == []


async def test_refresh_keeps_cursor_sort_and_picks(tmp_path, notices):
    db = build(tmp_path / "keep.duckdb")
    app = SaeBenchApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        tuned = screen.query_one("#layers-tuned", KeyedTable)
        tuned.focus()
        await pilot.press("o", "o")  # by loss recovered, ascending: layers 10, 6, 2
        layer2 = sql(db, "select sae_id from saes where model = 'tuned' and layer = 2")[0][0]
        tuned.move_cursor(row=2)
        assert cursor_sae(screen, tuned) == [layer2]

        added = add_sae(db, "tuned", 4, 0.70, 0.2)  # sorts between layers 10 and 6
        await pilot.press("r")
        await pilot.pause()
        recovered = done_rows(db, "tuned", "news")
        assert shown_layers(tuned) == sorted(recovered, key=recovered.get) == ["10", "4", "6", "2"]
        assert [added] in screen.groups.values()
        assert cursor_sae(screen, tuned) == [layer2] and tuned.cursor_row == 3
        assert app.focused is tuned

        await pilot.press("e")  # the other eval: same SAEs, same cursor, same sort
        await pilot.pause()
        recovered = done_rows(db, "tuned", "web")
        assert shown_layers(tuned) == sorted(recovered, key=recovered.get)
        assert cursor_sae(screen, tuned) == [layer2]
        assert shown_loss(tuned) == expected_loss(recovered)

        await pilot.press("c")
        await pilot.pause()
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        compare.query_one("#model-a").value = "tuned"
        compare.query_one("#model-b").value = "base"
        await pilot.pause()
        deltas = compare.query_one("#deltas", KeyedTable)
        deltas.sort_by("delta")
        deltas.move_cursor(row=3)
        kept = deltas.cursor_key
        await pilot.press("r")
        await pilot.pause()
        assert (compare.query_one("#model-a").value, compare.query_one("#model-b").value) == ("tuned", "base")
        assert deltas.cursor_key == kept and deltas.sort_column == "delta"
        shown = [float(plain(deltas.get_row(k)[4])) for k in deltas.row_keys()]
        assert shown == sorted(shown) and len(shown) == 6  # layer 4 exists only for tuned: no pair
    assert notices == []


def help_text(app) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(app.screen.query_one("#help", Static).content)
    return console.export_text()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A results file the tests below only read."""
    return build(tmp_path_factory.mktemp("small") / "small.duckdb")


async def test_help_lists_every_key_of_every_screen(small):
    """For each screen, the keys Textual itself says are active there (the screen's, the
    focused widget's and the app's) are in the help with their descriptions."""
    db = small
    sae_id = sql(db, "select min(sae_id) from saes")[0][0]
    app = SaeBenchApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for name, (screen_class, _) in SCREEN_REGISTRY.items():
            if name != "runs":
                app.open(name, *([sae_id] if screen_class is JobScreen else []))
                await pilot.pause()
            screen = app.screen
            active = {}
            for focus in [None, *screen.query(KeyedTable), *screen.query("Select, Input")]:
                screen.set_focus(focus)
                await pilot.pause()
                active.update(screen.active_bindings)
            app.action_help()
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = help_text(app)
            for key, active_binding in active.items():
                binding = active_binding.binding
                if binding.action in ("app.pop_screen",):
                    continue
                display = binding.key_display or app.get_key_display(binding)
                wanted = binding.description or binding.action.replace("_", " ")
                keys_of = [re.split(r"\s{2,}", line.strip())[0].split(" / ") for line in text.splitlines()
                           if line.strip().endswith(wanted)]  # the keys column of the lines saying `wanted`
                assert any(display in keys or key in keys for keys in keys_of), (name, key, wanted)
            await pilot.press("escape")
            assert app.screen is screen
            if name != "runs":
                await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("question_mark")
        text = help_text(app)
        for title in ("Every screen", "Runs", "Layers", "SAE", "Compare", "SQL console", "Tables", "Anywhere"):
            assert title in text
        await pilot.press("q")
        assert isinstance(app.screen, RunsScreen)


@pytest.mark.parametrize("keys", [[], ["enter"], ["enter", "enter"], ["c"], ["s"]], ids=["runs", "layers", "sae",
                                                                                         "compare", "sql"])
async def test_80x24_every_table_fits_and_ids_are_whole(small, keys):
    db = small
    run_id = sql(db, "select run_id from runs")[0][0]
    app = SaeBenchApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if keys == ["s"]:
            app.screen.query_one("#query").value = "select sae_id, model, layer from saes order by sae_id"
            await pilot.press("enter")
            await pilot.pause()
        tables = list(app.screen.query(DataTable))
        assert tables
        for table in tables:
            assert table.row_count > 0, table.id
            assert table.max_scroll_x == 0, f"{table.id}: {table.virtual_size.width} > {table.size.width}"
            for column in table.columns.values():  # every header whole
                assert column.get_render_width(table) >= Text.from_markup(str(column.label)).cell_len
        if not keys:
            assert plain(app.screen.query_one("#runs", DataTable).get_row_at(0)[0]) == run_id
        if keys == ["enter"]:
            labels = [str(c.label) for c in app.screen.query_one("#layers-base", DataTable).columns.values()]
            # the fixture's absorption scores are all n/a: no absorption column
            assert labels == ["Layer", "Loss rec.", "Expl. var.", "L0", "Dead %", "Health"]
