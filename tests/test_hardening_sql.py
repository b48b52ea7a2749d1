"""`sae-bench sql` and the TUI's SQL screen are read-only for real: every kind of write attempt
(to the results file, to other files, to settings, to the network) is refused in one line with
exit 2, and no file anywhere near it changes."""

from __future__ import annotations

import duckdb
import pytest

from hardening_fixtures import tree_state
from suite.cli import main
from suite.store.readonly import read_connection
from tui_fixture import build


@pytest.fixture
def results(tmp_path):
    """A real schema-3 results file, a writable DuckDB file of another program beside it, and
    the directory's state."""
    db = build(tmp_path / "results.duckdb")
    with duckdb.connect(str(tmp_path / "other.duckdb")) as con:
        con.execute("create table t as select 1 as a")
    return db, tmp_path


def _attempts(d: str) -> list[str]:
    db = f"{d}/results.duckdb"
    return [
        # the results file itself
        "delete from metrics", "update saes set status = 'failed'", "insert into runs (run_id) values ('x')",
        "drop table metrics", "create table x (a int)", "create view v as select 1", "alter table saes add column z int",
        "create macro m(x) as x", "truncate metrics", "create schema s",
        "select count(*) from metrics; delete from metrics",
        # the same file or another one attached for writing; the ATTACH/DETACH sequence of issue 10
        f"attach '{db}' as w (read_write); delete from w.metrics",
        f"attach '{d}/other.duckdb' as o (read_write); use o; detach results; attach '{db}' as x (read_write); "
        "delete from x.metrics",
        f"attach '{d}/other.duckdb' as o",
        f"attach '{d}/new.duckdb' as n",
        "attach ':memory:' as m; use m; detach results",
        # files anywhere
        f"copy metrics to '{d}/out.csv'",
        f"copy (select * from saes) to '{d}/out.parquet' (format parquet)",
        f"export database '{d}/exported'",
        f"copy from database results to other",
        f"select * from read_csv('{d}/../../../etc/passwd')",
        "select * from read_text('/etc/hostname')",
        "select * from glob('/*')",
        # extensions, the network, secrets
        "install httpfs", "load httpfs", f"load '{d}/x.duckdb_extension'", "force install sqlite",
        "select * from 'https://example.com/data.csv'", "attach 'md:'",
        "create persistent secret s (type http, bearer_token 'x')",
        # settings that would undo the protection or write files
        "set enable_external_access = true", "reset enable_external_access", "set lock_configuration = false",
        "set autoinstall_known_extensions = true", "pragma enable_profiling", f"set profile_output = '{d}/p.txt'",
        f"set temp_directory = '{d}/tmp'", "set allow_community_extensions = true",
        "begin transaction", "prepare p as delete from metrics",
    ]


def test_every_write_attempt_is_refused_in_one_line(results, capsys):
    db, directory = results
    before = tree_state(directory)
    failures = []
    for query in _attempts(directory.as_posix()):
        code = main(["sql", str(db), query])
        out = capsys.readouterr().out.strip()
        if code != 2 or len(out.splitlines()) != 1 or not out.startswith("error sql:") or "Traceback" in out:
            failures.append((query, code, out))
        if tree_state(directory) != before:
            failures.append((query, "changed files", sorted(set(tree_state(directory)) ^ set(before))))
            before = tree_state(directory)
    assert failures == []
    assert main(["sql", str(db), "select count(*) from metrics", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["count_star()", str(6 * 2 * 6)]  # tui_fixture: 6 SAEs x 2 evals x 6 metrics


def test_the_issue_10_sequence_does_write_without_the_hardening(results):
    """Why read_only=True is not enough: the same statements through a plain read-only
    connection delete every metric (on a copy)."""
    db, directory = results
    copy = directory / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    with duckdb.connect(str(copy), read_only=True) as con:
        for part in (f"attach '{directory}/other.duckdb' as o (read_write)", "use o", "detach copy",
                     f"attach '{copy}' as x (read_write)", "delete from x.metrics", "detach x"):
            con.execute(part)
    assert duckdb.connect(str(copy), read_only=True).execute("select count(*) from metrics").fetchone()[0] == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from metrics").fetchone()[0] == 6 * 2 * 6


@pytest.mark.parametrize("query", ["", "   ", "-- only a comment", "/* a block comment */", ";;"])
def test_empty_and_comment_only_queries(results, capsys, query):
    db, _ = results
    assert main(["sql", str(db), query]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "the query is empty (or only comments)" in out


@pytest.mark.parametrize("query", ["describe saes", "show tables", "summarize metrics", "from runs",
                                   "with x as (select 1 as a) select * from x", "explain select 1",
                                   "pragma table_info('saes')", "select * from duckdb_settings() limit 1",
                                   "select 1; select 2"])
def test_reads_of_every_kind_run(results, capsys, query):
    db, directory = results
    before = tree_state(directory)
    assert main(["sql", str(db), query]) == 0, capsys.readouterr().out
    assert tree_state(directory) == before


def test_syntax_error_is_one_line(results, capsys):
    db, _ = results
    assert main(["sql", str(db), "selec 1"]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "ParserException" in out


def test_a_snapshot_reader_never_holds_the_file(results):
    """While a run writes, user SQL reads a private copy: a writer gets in mid-query."""
    db, _ = results
    with read_connection(db, snapshot=True) as (con, copied):
        assert copied
        with duckdb.connect(str(db)) as writer:  # would fail with a lock error if the reader held the file
            writer.execute("create table written_meanwhile (a int)")
        assert con.execute("select count(*) from metrics").fetchone()[0] == 6 * 2 * 6


async def test_tui_sql_screen_uses_the_hardened_reader(results):
    from textual.widgets import Input, Static

    from tui.app import SaeBenchApp

    db, directory = results
    before = tree_state(directory)
    app = SaeBenchApp(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        for query in (f"copy metrics to '{directory}/out.csv'",
                      f"attach '{directory}/other.duckdb' as o (read_write); use o; detach results; "
                      f"attach '{db}' as x (read_write); delete from x.metrics", "", "-- nothing"):
            app.screen.query_one("#query", Input).value = query
            await pilot.press("enter")
            await pilot.pause()
            shown = str(app.screen.query_one("#sql-error", Static).render())
            assert "read-only" in shown or "empty" in shown, shown
        await pilot.press("escape", "q")
    assert tree_state(directory) == before
