"""Results files of schema 2 (sae-bench 0.1): readers refuse them without touching them; `migrate`
and `run` migrate them after a backup, keep every SAE (nothing retrained), keep the old scores as
history and compute current scores under SAEBench's conventions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from conftest import TINY_SPEC, write_spec
from legacy_v2 import write_v2_store
from suite.cli import main
from suite.store.migrate import LEGACY_CORE_VERSION


def one_model(db: Path) -> str:
    return TINY_SPEC.format(db=db).replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [0, 2]")


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
    out = capsys.readouterr().out
    assert "schema version 2" in out and f"sae-bench migrate {db}" in out
    assert digest(db) == before and not list(db.parent.glob("*.bak"))


def test_run_migrates_keeps_saes_and_rescores_without_training(v2_file, capsys):
    db, spec, jobs = v2_file
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
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
    assert "migrated" in capsys.readouterr().out
    assert rows(db, "select value from meta where key = 'schema_version'") == [("3",)]
    assert main(["migrate", str(db)]) == 0
    assert "already has results schema version 3" in capsys.readouterr().out
    assert main(["run", str(spec)]) == 0
    assert "0 SAE(s) trained" in capsys.readouterr().out
