"""Results files that are not ours (or not this version's) are refused by every reader with one
line naming the file and a non-zero exit, and are never modified; `run --db` does not add tables
to another program's DuckDB. Every file is generated here."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import duckdb
import pytest

from hardening_fixtures import mini_spec, tree_state
from legacy_v2 import write_v2_store
from suite.cli import main
from suite.store import SCHEMA_VERSION
from tui_fixture import build


def _real(directory: Path) -> bytes:
    return build(directory / "real.duckdb").read_bytes()


def _duckdb(path: Path, *statements: str) -> None:
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)


def make_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its refusal must contain)."""
    scratch = directory / "scratch"
    scratch.mkdir()
    real = _real(scratch)
    d = directory / "files"
    d.mkdir()
    files: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, phrase: str) -> None:
        (d / name).write_bytes(data)
        files[name] = (d / name, phrase)

    put("empty.duckdb", b"", "is empty (0 bytes)")
    put("text.duckdb", b"select * from health;\n" * 50, "is a text file")
    put("zeros.duckdb", bytes(len(real)), "not a DuckDB database")
    put("random.duckdb", os.urandom(len(real)), "not a DuckDB database")
    put("truncated-half.duckdb", real[: len(real) // 2], "is a damaged")
    put("truncated-header.duckdb", real[:100], "is a damaged")
    put("header-then-random.duckdb", real[:4096] + os.urandom(len(real) - 4096), "is a damaged")
    put("header-then-zeros.duckdb", real[:8192] + bytes(len(real) - 8192), "is a damaged")
    sqlite = d / "sqlite.duckdb"
    with sqlite3.connect(sqlite) as con:
        con.execute("create table runs (a)")
    files["sqlite.duckdb"] = (sqlite, "is a SQLite database")
    _duckdb(d / "foreign.duckdb", "create table orders (id int, total double)", "insert into orders values (1, 2.5)",
            "create table meta (k varchar)")
    files["foreign.duckdb"] = (d / "foreign.duckdb", "DuckDB database of another program (tables: meta, orders)")
    _duckdb(d / "no-tables.duckdb", "select 1")
    files["no-tables.duckdb"] = (d / "no-tables.duckdb", "empty DuckDB database")
    _duckdb(d / "v1.duckdb", *(f"create table {t} (a int)" for t in ("runs", "jobs", "metrics", "train_log", "gates")))
    files["v1.duckdb"] = (d / "v1.duckdb", "results schema version 1")
    write_v2_store(d / "v2.duckdb", mini_spec(scratch).read_text(), scratch / "v2-checkpoints")
    files["v2.duckdb"] = (d / "v2.duckdb", "sae-bench migrate")
    newer = d / "v4.duckdb"
    newer.write_bytes(real)
    _duckdb(newer, f"update meta set value = '{SCHEMA_VERSION + 1}' where key = 'schema_version'")
    files["v4.duckdb"] = (newer, f"written by a newer sae-bench (results schema version {SCHEMA_VERSION + 1}")
    put("directory.duckdb", b"", "")
    (d / "directory.duckdb").unlink()
    (d / "directory.duckdb").mkdir()
    files["directory.duckdb"] = (d / "directory.duckdb", "is not a file")
    files["missing.duckdb"] = (d / "missing.duckdb", "no results database at")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad-files")
    return directory / "files", make_files(directory)


def _commands(path: Path, out: Path) -> list[list[str]]:
    return [["report", str(path)], ["report", str(path), "--format", "markdown", "-o", str(out / "r.md")],
            ["gate", str(path)], ["sql", str(path), "select 1"], ["export", str(path), "--parquet", str(out / "pq")],
            ["tui", str(path)]]


def test_every_reader_refuses_in_one_line_and_changes_nothing(bad_files, tmp_path, capsys):
    directory, files = bad_files
    before = tree_state(directory)
    problems = []
    for name, (path, phrase) in files.items():
        for argv in _commands(path, tmp_path):
            code = main(argv)
            captured = capsys.readouterr()
            lines = captured.out.strip().splitlines()
            if code != 2 or len(lines) != 1 or path.name not in lines[0] or phrase not in lines[0] \
                    or "Traceback" in captured.out + captured.err:
                problems.append((name, argv[0], code, captured.out[-300:]))
        on_disk = sorted(p.name for p in directory.iterdir())
        if tree_state(directory) != before or on_disk != sorted(n for n in files if n != "missing.duckdb"):
            problems.append((name, "modified or files added", on_disk))
    assert problems == []
    assert not (tmp_path / "pq").exists() and not (tmp_path / "r.md").exists()
    assert sorted(p.name for p in directory.iterdir()) == sorted(n for n in files if n != "missing.duckdb")


def test_pytest_plugin_refuses_in_one_line(bad_files, pytester):
    directory, files = bad_files
    before = tree_state(directory)
    for name in ("empty.duckdb", "random.duckdb", "truncated-half.duckdb", "sqlite.duckdb", "foreign.duckdb",
                 "v2.duckdb", "v4.duckdb", "missing.duckdb"):
        path, phrase = files[name]
        result = pytester.runpytest("--sae-bench", str(path), "-p", "no:cacheprovider", "-p", "no:textual-snapshot")
        assert result.ret != 0
        errors = [line for line in result.errlines + result.outlines if line.startswith("ERROR")]
        assert len(errors) == 1 and path.name in errors[0] and phrase in errors[0], result.errlines
        assert not any("Traceback" in line for line in result.errlines + result.outlines)
    assert tree_state(directory) == before


@pytest.mark.parametrize("name", ["foreign.duckdb", "sqlite.duckdb", "text.duckdb", "truncated-half.duckdb",
                                  "v4.duckdb"])
def test_run_refuses_a_file_that_is_not_ours(bad_files, tmp_path, capsys, name):
    """Nothing is trained, no table is added, no lock file appears beside it."""
    directory, files = bad_files
    path, phrase = files[name]
    before = tree_state(directory)
    spec = mini_spec(tmp_path, db=path)
    assert main(["run", str(spec)]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and phrase in out[0] and path.name in out[0]
    assert tree_state(directory) == before
    assert not (path.parent / (path.name + ".lock")).exists()
    assert not (tmp_path / "mini-checkpoints").exists()


def test_tui_app_shows_why_instead_of_a_traceback(bad_files):
    """Picked inside the app (not named on the command line), a foreign file gets a message."""
    import asyncio

    from textual.widgets import Static

    from tui.app import MessageScreen, SaeBenchApp

    _, files = bad_files

    async def check(path: Path, phrase: str) -> None:
        app = SaeBenchApp(path)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, MessageScreen)
            assert phrase in str(app.screen.query_one("#message", Static).render()).replace("\n", " ")

    for name in ("foreign.duckdb", "random.duckdb"):
        asyncio.run(check(*files[name]))


def test_a_results_file_named_like_a_remote_database_stays_local(tmp_path, capsys, monkeypatch):
    """`md:x` is a MotherDuck (network) name to DuckDB; a local file of that name is read as a file."""
    monkeypatch.chdir(tmp_path)
    Path("md:results.duckdb").write_bytes(build(tmp_path / "real.duckdb").read_bytes())
    assert main(["sql", "md:results.duckdb", "select count(*) from saes", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["count_star()", "6"]


def test_report_never_overwrites_the_results_file(tmp_path, capsys):
    db = build(tmp_path / "real.duckdb")
    before = db.read_bytes()
    assert main(["report", str(db), "--format", "markdown", "-o", str(db)]) == 2
    assert "results file itself" in capsys.readouterr().out
    assert db.read_bytes() == before


def test_run_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file, not a directory")
    assert main(["run", str(mini_spec(tmp_path, db=tmp_path / "blocker" / "x.duckdb"))]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "cannot write the results file" in out[0] and "choose a writable place" in out[0]
