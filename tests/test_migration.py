"""Results files of earlier schemas: readers refuse them without touching them; `migrate` and
`run` migrate them after a backup. Schema 2 (sae-bench 0.1): every SAE kept (nothing retrained),
the old scores kept as history and current scores computed under SAEBench's conventions.
Schema 3: columns added, keys unchanged, so a migrated file resumes with nothing to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from conftest import TINY_SPEC, write_spec
from legacy_v2 import write_v2_store
from legacy_v3 import write_v3_store
from suite.cli import main
from suite.store import SCHEMA_VERSION
from suite.store.migrate import LEGACY_CORE_VERSION, STEPS


def one_model(db: Path) -> str:
    return TINY_SPEC.format(db=db).replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [0, 2]")


def said(capsys) -> str:
    """What the command printed, with the wrapping of a narrow terminal undone."""
    return " ".join(capsys.readouterr().out.split())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(db, query, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


@pytest.fixture()
def v2_file(tmp_path):
    db = tmp_path / "old.duckdb"
    text = one_model(db)
    jobs = write_v2_store(db, text, tmp_path / "old-checkpoints")
    return db, write_spec(tmp_path, text), jobs


@pytest.mark.parametrize("command", [["report"], ["gate"], ["sql", "select 1"], ["export", "--parquet", "pq"]])
def test_readers_refuse_an_old_file_without_touching_it(v2_file, capsys, command, tmp_path):
    db, *_ = v2_file
    before = digest(db)
    args = [command[0], str(db), *command[1:]]
    if command[0] == "export":
        args[-1] = str(tmp_path / "pq")
    assert main(args) == 2
    out = said(capsys)
    assert "schema version 2" in out and f"sae-bench migrate {db}" in out
    assert digest(db) == before and not list(db.parent.glob("*.bak"))


def test_run_migrates_keeps_saes_and_rescores_without_training(v2_file, capsys):
    db, spec, jobs = v2_file
    assert main(["run", str(spec)]) == 0
    out = said(capsys)
    assert "0 SAE(s) trained or imported" in out and "6 score(s) computed" in out  # 2 SAEs x (2 evals + absorption)
    backups = list(db.parent.glob("old.duckdb.schema2-*.bak"))
    assert len(backups) == 1
    # each job became an SAE under the key the spec computes today, with its checkpoint and curve
    assert sorted(rows(db, "select sae_key, status, train_seconds from saes")) == sorted(
        (job["new_key"], "done", 12.5) for job in jobs)
    assert rows(db, "select count(*) from train_log") == [(4,)]
    # the old numbers are history, never current; current scores are new and computed from the weights
    assert rows(db, "select count(*) from scores where metric_version = ?", [LEGACY_CORE_VERSION]) == [(4,)]
    assert rows(db, "select count(*) from current_scores where metric_version = ?", [LEGACY_CORE_VERSION]) == [(0,)]
    assert rows(db, "select count(*) from layer_summary where eval_kind = 'core' and loss_recovered = 0.5") == [(0,)]
    assert rows(db, "select count(*) from layer_summary where eval_kind = 'core' and l0 <= k") == [(4,)]
    # the migrated file reads like any other
    assert main(["report", str(db)]) == 0 and main(["gate", str(db)]) in (0, 1)


def test_migrate_command_then_a_run_is_resumable(v2_file, capsys):
    db, spec, _ = v2_file
    assert main(["migrate", str(db)]) == 0
    assert "migrated" in said(capsys)
    assert rows(db, "select value from meta where key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert rows(db, "select value from meta where key = 'migrated_from'") == [("2",)]
    assert main(["migrate", str(db)]) == 0
    assert f"already has results schema version {SCHEMA_VERSION}" in said(capsys)
    assert main(["run", str(spec)]) == 0
    assert "0 SAE(s) trained" in said(capsys)


def test_every_older_version_has_a_step_to_the_next():
    assert sorted(STEPS) == list(range(2, SCHEMA_VERSION))


@pytest.fixture()
def v3_file(tiny_run, tmp_path):
    spec, db, code, _ = tiny_run
    assert code == 0
    old = tmp_path / "v3.duckdb"
    copied = write_v3_store(db, old)
    assert "executor" not in copied["runs"] and "loaded_dtype" not in copied["saes"]
    text = spec.read_text().replace(str(db), str(old))
    return old, write_spec(tmp_path, text), db


@pytest.mark.parametrize("command", [["report"], ["gate"], ["sql", "select 1"]])
def test_readers_refuse_a_schema_3_file_without_touching_it(v3_file, capsys, command):
    old, *_ = v3_file
    before = digest(old)
    assert main([command[0], str(old), *command[1:]]) == 2
    out = said(capsys)
    assert "schema version 3" in out and f"sae-bench migrate {old}" in out
    assert digest(old) == before


def test_schema_3_migrates_with_new_columns_and_resumes_with_nothing_to_do(v3_file, capsys):
    old, spec, current = v3_file
    saes_before = rows(old, "select sae_key, status, checkpoint_path, model_dtype, device_name from saes order by 1")
    scores_before = rows(old, "select score_key, status from scores order by 1")
    assert main(["migrate", str(old)]) == 0
    out = said(capsys)
    assert f"from schema 3 to {SCHEMA_VERSION}" in out and "Its SAEs and scores are kept as they were" in out
    assert len(list(old.parent.glob("v3.duckdb.schema3-*.bak"))) == 1
    assert rows(old, "select value from meta where key = 'migrated_from'") == [("3",)]
    # the same SAEs and scores under the same keys; the columns of a fresh file, in its order
    assert rows(old, "select sae_key, status, checkpoint_path, model_dtype, device_name from saes order by 1") \
        == saes_before
    assert rows(old, "select score_key, status from scores order by 1") == scores_before
    layout = "select table_name, column_name, data_type from information_schema.columns order by all"
    assert rows(old, layout) == rows(current, layout)
    # unknowns stay null; `auto` on CPU became float32, as the loader's rule says
    assert rows(old, "select count(*) from runs where executor is null and threads is null") == \
        rows(old, "select count(*) from runs")
    assert {r[0] for r in rows(old, "select model_dtype from saes")} == {"auto"}
    assert rows(old, "select distinct device_name, loaded_dtype from saes") == [("cpu", "float32")]
    assert rows(old, "select distinct loaded_dtype from scores") == [("float32",)]
    assert rows(old, "select count(*) from saes where wandb_url is not null") == [(0,)]
    # resume: nothing to train, nothing to score
    assert main(["run", str(spec)]) == 0
    out = said(capsys)
    assert "0 SAE(s) trained or imported" in out and "0 score(s) computed" in out
    assert main(["report", str(old)]) == 0


def test_a_run_records_executor_threads_and_the_loaded_dtype(tiny_run):
    import torch

    _, db, code, _ = tiny_run
    assert code == 0
    # this process ran the local executor: its thread count is what the run used
    assert rows(db, "select executor, threads from runs") == [("local", torch.get_num_threads())]
    assert rows(db, "select distinct model_dtype, loaded_dtype from saes") == [("auto", "float32")]
    assert rows(db, "select distinct loaded_dtype from scores") == [("float32",)]
