"""User text is text: model aliases and eval names holding rich markup (`[/bold]`,
`[models.x]`) or emoji codes (`:train:`) are printed literally by every command and the TUI."""

from __future__ import annotations

import pytest

from hardening_fixtures import mini_spec
from suite.cli import main

A, B, EVAL = "[/bold]", "[red]ft[/red] :train:", "[models.x] :train:"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    spec = mini_spec(directory, layers="[0, 1]")
    text = (spec.read_text()
            .replace("[models.base]", f'[models."{A}"]')
            .replace('[grid]', f'[models."{B}"]\nid = "builtin:tiny-finetune"\n[grid]')
            .replace('models = ["base"]', f'models = ["{A}", "{B}"]')
            .replace("[eval.pyref]", f'[eval."{EVAL}"]'))
    spec.write_text(text)
    return spec, directory / "mini.duckdb"


def _literal(out: str) -> None:
    assert A in out and EVAL in out and "🚆" not in out and "Traceback" not in out


def test_validate_plan_run_print_names_literally(hostile_run, capsys):
    spec, db = hostile_run
    assert main(["validate", str(spec)]) == 0
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    _literal(out)
    assert B in out
    code = main(["run", str(spec)])
    out = capsys.readouterr().out
    assert code in (0, 1)  # gates may fail; the run itself must finish
    _literal(out)
    assert f"scoring on {EVAL} ({A})" in out  # a progress bar's label


@pytest.mark.parametrize("argv", [["report"], ["report", "--format", "markdown"], ["report", "--compare", A, B],
                                  ["gate", "--all"]])
def test_readers_print_names_literally(hostile_run, capsys, argv):
    spec, db = hostile_run
    if not db.exists():
        main(["run", str(spec)])
        capsys.readouterr()
    main([argv[0], str(db), *argv[1:]])
    out = capsys.readouterr().out
    _literal(out)


def test_html_report_and_sql_keep_names(hostile_run, tmp_path, capsys):
    spec, db = hostile_run
    if not db.exists():
        main(["run", str(spec)])
    assert main(["report", str(db), "--format", "html", "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "[/bold]" in html and ":train:" in html
    capsys.readouterr()
    assert main(["sql", str(db), "select distinct model, eval_name from layer_summary order by 1"]) == 0
    out = capsys.readouterr().out
    _literal(out)
    assert B in out


def test_hints_keep_their_brackets(tmp_path, capsys):
    spec = mini_spec(tmp_path)
    spec.write_text(spec.read_text().replace('models = ["base"]', 'models = ["[b]missing[/b] :train:"]'))
    assert main(["validate", str(spec)]) == 2
    out = capsys.readouterr().out
    assert "'[b]missing[/b] :train:' not declared" in out and "(add a [models.NAME] table)" in out


async def test_tui_screens_show_names_literally(hostile_run):
    from textual.widgets import DataTable, Label, Select

    from tui.app import CompareScreen, JobScreen, LayersScreen, SaeBenchApp

    spec, db = hostile_run
    if not db.exists():
        main(["run", str(spec)])
    app = SaeBenchApp(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LayersScreen)
        titles = " ".join(str(label.render()) for label in app.screen.query(Label))
        assert A in titles and B in titles
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        metrics = app.screen.query_one("#metrics", DataTable)
        assert EVAL in [str(c.label) for c in metrics.columns.values()]
        await pilot.press("escape", "c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one("#model-a", Select).value == A
        assert app.screen.query_one("#model-b", Select).value == B
        summary = app.screen.query_one("#summary", DataTable)
        assert [str(c.label) for c in summary.columns.values()][1:3] == [A, B]
        await pilot.press("escape", "q")
