"""Health gates as pytest items (through pytester, in a subprocess), `sae-bench gate`,
spec overrides re-gating stored scores, and read-only SQL / Parquet export."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from conftest import TINY_SPEC, write_spec
from suite.cli import main

OVERRIDES = """
[health]
absorption = { max = 0.35 }
[[health.override]]
models = ["base"]
layers = [0]
loss_recovered = { min = 0.9999 }
[[health.override]]
models = ["base"]
layers = [1]
loss_recovered = { min = 0.9999 }
allow_fail = true
"""


@pytest.fixture(scope="module")
def planted_db(tiny_run, tmp_path_factory):
    """The tiny run's results re-gated by a spec with a failing, an allowed-to-fail and an n/a gate."""
    spec, db, *_ = tiny_run
    directory = tmp_path_factory.mktemp("planted")
    planted = directory / "planted.duckdb"
    shutil.copy(db, planted)
    text = spec.read_text().replace(str(db), str(planted)) + OVERRIDES
    assert main(["run", str(write_spec(directory, text))]) == 0  # nothing trains: every SAE and score is done
    return planted


def test_overrides_regate_without_retraining(planted_db, tiny_run):
    _, db, *_ = tiny_run
    with duckdb.connect(str(planted_db), read_only=True) as con:
        assert con.execute("select count(*) from runs where saes_to_train = 0 and scores_to_run = 0").fetchone()[0] == 1
        failed = con.execute("select a.layer, g.allowed_to_fail, count(*) from gates g join scores s using (score_id) "
                             "join saes a using (sae_id) where g.passed = false group by all order by all").fetchall()
        na = con.execute("select count(*), min(reason) from gates where passed is null").fetchone()
    assert failed == [(0, False, 2), (1, True, 2)]
    assert na[0] == 6 and "letters have a ground-truth probe F1" in na[1]
    with duckdb.connect(str(db), read_only=True) as original, duckdb.connect(str(planted_db), read_only=True) as new:
        assert original.execute("select * from metrics order by all").fetchall() == \
            new.execute("select * from metrics order by all").fetchall()


def test_pytest_plugin_counts(planted_db, pytester):
    result = pytester.runpytest_subprocess("--sae-bench", str(planted_db), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6 * 2 * 3 - 4, failed=2, xfailed=2, skipped=6)
    result.stdout.fnmatch_lines(["*unhealthy SAE: loss_recovered = 0.9*gate loss_recovered>=0.9999 failed*",
                                 "FAILED *planted.duckdb::tiny::base::layer0::pyref::loss_recovered"])
    healthy = duckdb.connect(str(planted_db), read_only=True).execute("""
        select count(*) filter (where ok), count(*) from (select a.model, a.layer, bool_and(g.passed) as ok
        from saes a join current_scores s using (sae_id) join gates g using (score_id)
        where g.passed is not null group by all)""").fetchone()
    assert healthy == (4, 6)  # base layers 0 (failed) and 1 (allowed to fail, still not healthy)
    result.stdout.fnmatch_lines(["sae-bench planted.duckdb: 4/6 layers healthy (healthy: *)"])


def test_pytest_plugin_k_selection_and_names(planted_db, pytester):
    result = pytester.runpytest_subprocess("--sae-bench", str(planted_db), "-k", "finetune and layer2", "-v")
    result.assert_outcomes(passed=6, skipped=1)
    result.stdout.fnmatch_lines(["*collected 42 items / 35 deselected / 7 selected",
                                 "*planted.duckdb::tiny::finetune::layer2::pylib::l0 PASSED*"])
    result = pytester.runpytest_subprocess("--sae-bench", str(planted_db), "-k", "base and layer0 and loss_recovered")
    result.assert_outcomes(failed=2)  # pyref and pylib


def test_pytest_plugin_collects_only_the_gates_from_a_project_root(planted_db, pytester):
    """Run where a project's tests (and testpaths) are, `--sae-bench` collects the file's gates
    alone; test files named on the command line are still collected beside them."""
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    pytester.makepyfile(**{"tests/test_project": "def test_project():\n    assert True\n"})
    result = pytester.runpytest_subprocess("--sae-bench", str(planted_db), "--collect-only", "-q")
    assert "test_project" not in result.stdout.str()
    assert "planted.duckdb::tiny::base::layer0::pyref::loss_recovered" in result.stdout.str()
    result = pytester.runpytest_subprocess("--sae-bench", str(planted_db), "tests/test_project.py", "--collect-only",
                                           "-q")
    assert "tests/test_project.py::test_project" in result.stdout.str()


def test_pytest_plugin_missing_db(pytester, tmp_path):
    result = pytester.runpytest_subprocess("--sae-bench", str(tmp_path / "none.duckdb"))
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*no results database*"])


def test_gate_command_exit_codes(planted_db, tiny_run, capsys):
    _, db, *_ = tiny_run
    assert main(["gate", str(db)]) == 0
    assert main(["gate", str(planted_db)]) == 1
    out = capsys.readouterr().out
    assert "32 passed, 2 failed, 2 allowed to fail, 6 not applicable" in out


def test_sql_formats_and_read_only(tiny_run, capsys):
    _, db, *_ = tiny_run
    assert main(["sql", str(db), "select model, count(*) as n from saes group by 1 order by 1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"model": "base", "n": 3}, {"model": "finetune", "n": 3}]
    assert main(["sql", str(db), "select layer from saes where model = 'base' order by 1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["layer", "0", "1", "2"]
    assert main(["sql", str(db), "delete from metrics"]) == 2
    assert "read-only" in capsys.readouterr().out
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from metrics").fetchone()[0] > 0


def test_export_parquet_round_trips(tiny_run, tmp_path):
    _, db, *_ = tiny_run
    assert main(["export", str(db), "--parquet", str(tmp_path / "pq")]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ("runs", "saes", "scores", "metrics", "gates", "train_log", "latent_density", "health",
                      "layer_summary", "current_scores"):
            stored = con.execute(f"select count(*) from {table}").fetchone()[0]
            exported = con.execute(f"select count(*) from '{tmp_path}/pq/{table}.parquet'").fetchone()[0]
            assert stored == exported > 0
