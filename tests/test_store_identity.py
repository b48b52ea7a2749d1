"""A results file is identified by its structure, not by one `meta` row: a DuckDB file whose
`meta` claims a schema version but lacks that version's tables, columns or views is refused in
one line by every reader, the TUI, the pytest plugin, `run` and `migrate`, and never modified.
Empty or blank paths in a spec are refused at `validate`, with the field's path."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from hardening_fixtures import mini_spec, tree_state
from suite.cli import main
from suite.store import SCHEMA_VERSION
from suite.store.schema import TABLES
from suite.store.structure import FROZEN, expected
from tui_fixture import build


def _duckdb(path: Path, *statements: str) -> None:
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)


def test_the_current_version_is_frozen_as_the_ddl_creates_it():
    with duckdb.connect() as con:
        con.execute(TABLES)
        made: dict[str, set[str]] = {}
        for table, column in con.execute("select table_name, column_name from information_schema.columns").fetchall():
            made.setdefault(table, set()).add(column)
    assert expected(SCHEMA_VERSION) == made
    assert sorted(FROZEN) == list(range(2, SCHEMA_VERSION + 1))


def make_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the phrase its refusal must contain)."""
    real = build(directory / "real.duckdb").read_bytes()
    d = directory / "files"
    d.mkdir()
    files: dict[str, tuple[Path, str]] = {}
    meta = "create table meta (key varchar primary key, value varchar)"
    for version in (SCHEMA_VERSION, 3, 2):  # a `meta` row and nothing else (3: the case that was accepted)
        path = d / f"claims-{version}.duckdb"
        _duckdb(path, meta, f"insert into meta values ('schema_version', '{version}')")
        files[path.name] = (path, f"says results schema version {version} but lacks")
    damage = {"no-column.duckdb": ("alter table saes drop column loaded_dtype", "saes.loaded_dtype"),
              "no-table.duckdb": ("drop table latent_density", "latent_density"),
              "no-view.duckdb": ("drop view health", "view health")}
    for name, (statement, phrase) in damage.items():
        (d / name).write_bytes(real)
        _duckdb(d / name, statement)
        files[name] = (d / name, phrase)
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("structure")
    return directory / "files", make_files(directory)


def test_every_reader_refuses_in_one_line_and_changes_nothing(bad_files, tmp_path, capsys):
    directory, files = bad_files
    before = tree_state(directory)
    problems = []
    for name, (path, phrase) in files.items():
        for argv in (["report", str(path)], ["report", str(path), "--format", "json", "-o", str(tmp_path / "r.json")],
                     ["gate", str(path)], ["sql", str(path), "select count(*) from saes"],
                     ["export", str(path), "--parquet", str(tmp_path / "pq")], ["tui", str(path)],
                     ["migrate", str(path)]):
            code = main(argv)
            captured = capsys.readouterr()
            text = " ".join(captured.out.split())  # undo an 80-column terminal's wrapping
            if code != 2 or path.name not in text or phrase not in text or "Traceback" in captured.out + captured.err \
                    or text.count(str(path)) != 1:
                problems.append((name, argv[0], code, captured.out[-300:]))
    assert problems == []
    assert tree_state(directory) == before
    assert not (tmp_path / "pq").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name", ["claims-3.duckdb", f"claims-{SCHEMA_VERSION}.duckdb", "no-column.duckdb"])
def test_run_refuses_a_file_that_only_claims_to_be_ours(bad_files, tmp_path, capsys, name):
    directory, files = bad_files
    path, phrase = files[name]
    before = tree_state(directory)
    assert main(["run", str(mini_spec(tmp_path, db=path))]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert phrase in text and path.name in text
    assert tree_state(directory) == before and not (tmp_path / "mini-checkpoints").exists()


def test_pytest_plugin_and_tui_refuse_in_one_line(bad_files, pytester):
    import asyncio

    from textual.widgets import Static

    from tui.app import MessageScreen, SaeBenchApp

    directory, files = bad_files
    before = tree_state(directory)
    for name in ("claims-3.duckdb", "no-view.duckdb"):
        path, phrase = files[name]
        result = pytester.runpytest("--sae-bench", str(path), "-p", "no:cacheprovider", "-p", "no:textual-snapshot")
        assert result.ret != 0
        errors = [line for line in result.errlines + result.outlines if line.startswith("ERROR")]
        assert len(errors) == 1 and path.name in errors[0] and phrase in errors[0], result.errlines
        assert not any("Traceback" in line for line in result.errlines + result.outlines)

    async def check(path: Path, phrase: str) -> None:
        app = SaeBenchApp(path)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, MessageScreen)
            assert phrase in " ".join(str(app.screen.query_one("#message", Static).render()).split())

    for name in (f"claims-{SCHEMA_VERSION}.duckdb", "no-table.duckdb"):
        asyncio.run(check(*files[name]))
    assert tree_state(directory) == before


@pytest.mark.parametrize("setting, field", [
    ('db = ""', "suite.db"),
    ('db = "   "', "suite.db"),
    ('checkpoints = ""', "suite.checkpoints"),
    ('checkpoints = "\\t"', "suite.checkpoints"),
])
def test_empty_paths_are_refused_at_validate(tmp_path, capsys, setting, field):
    spec = mini_spec(tmp_path)
    spec.write_text(re.sub(r'(?m)^db = ".*"$', setting.replace("\\", "\\\\"), spec.read_text(), count=1))
    assert main(["validate", str(spec)]) == 2
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 1 and f"{field}: must not be empty or blank" in lines[0]


@pytest.mark.parametrize("old, new, field", [
    ('id = "builtin:tiny-base"', 'id = " "', "models.base.id"),
    ('path = "builtin:pyref", split = "train"', 'path = "", split = "train"', "train.dataset.path"),
])
def test_blank_model_ids_and_dataset_paths_are_refused_at_validate(tmp_path, capsys, old, new, field):
    spec = mini_spec(tmp_path)
    assert old in spec.read_text()
    spec.write_text(spec.read_text().replace(old, new))
    assert main(["validate", str(spec)]) == 2
    assert f"{field}: must not be empty or blank" in " ".join(capsys.readouterr().out.split())
