"""Weights & Biases mirroring: each SAE a run finishes becomes one W&B run (offline here: no
network), whose curves and metrics are the stored ones; a W&B failure costs one warning line
and never the run; the results file stays the source of truth."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import duckdb
import pytest

from conftest import TINY_SPEC, write_spec
from suite.cli import main

wandb = pytest.importorskip("wandb")

pytestmark = pytest.mark.slow


def one_sae(db: Path, wandb_line: str = "") -> str:
    """The tiny spec cut to one model and two layers, with `wandb_line` under [suite]."""
    text = TINY_SPEC.format(db=db).replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [0, 2]")
    return text.replace('[models.base]', f'{wandb_line}\n\n[models.base]', 1) if wandb_line else text


def rows(db: Path, query: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def said(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def wandb_records(run_dir: Path) -> list:
    """The records of an offline run's `.wandb` file: W&B's 7-byte header, then LevelDB-log
    records (checksum 4, length 2, type 1: full=1, first=2, middle=3, last=4) in 32 KiB blocks,
    each a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def logged(run_dir: Path) -> tuple[dict, dict[int, dict], dict]:
    """(config, history by step, summary) as the offline run holds them."""
    config, history, summary = {}, {}, {}
    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind in ("config", "run"):
            update = record.config.update if kind == "config" else record.run.config.update
            config.update({i.key: json.loads(i.value_json) for i in update})
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history[items["_step"]] = items
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return config, history, summary


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path / "wandb-dir"


def test_offline_mirror_holds_the_stored_curves_and_metrics(offline, tmp_path, capsys):
    db = tmp_path / "w.duckdb"
    spec = write_spec(tmp_path, one_sae(db, 'wandb = { project = "sae-bench-test", entity = "lab" }'))
    assert main(["run", str(spec)]) == 0
    assert "warning" not in said(capsys)
    saes = rows(db, "select sae_id, sae_key, layer, wandb_url from saes order by layer")
    assert len(saes) == 2
    for sae_id, sae_key, layer, location in saes:
        run_dir = Path(location)
        assert run_dir.is_dir() and run_dir.parent == offline / "wandb" and run_dir.name.startswith("offline-run-")
        config, history, summary = logged(run_dir)
        assert config["sae_key"] == sae_key and config["layer"] == layer
        assert config["settings"]["layer"] == layer and config["loaded_dtype"] == "float32"
        curve = rows(db, "select step, tokens, loss, fvu, l0, dead_fraction from train_log where sae_id = ? "
                         "order by step", [sae_id])
        assert len(curve) >= 2 and sorted(history) == [step for step, *_ in curve]
        for step, tokens, loss, fvu, l0, dead in curve:
            h = history[step]
            assert (h["train/tokens"], h["train/loss"], h["train/fvu"], h["train/l0"], h["train/dead_fraction"]) \
                == (tokens, loss, fvu, l0, dead)
        metrics = rows(db, "select s.eval_name, m.metric, m.value from current_scores s join metrics m "
                           "using (score_id) where s.sae_id = ?", [sae_id])
        assert {e for e, *_ in metrics} >= {"pyref", "pylib"}
        for eval_name, metric, value in metrics:
            got = summary[f"{eval_name}/{metric}"]
            assert (math.isnan(value) and got == "NaN") or got == value, (eval_name, metric)
        gates = rows(db, "select eval_name, gates_passed, gates_total from health where sae_id = ?", [sae_id])
        assert gates and all(summary[f"{e}/gates_passed"] == p and summary[f"{e}/gates_total"] == t
                             for e, p, t in gates)
    # a second run has nothing new: nothing is mirrored again
    assert main(["run", str(spec)]) == 0
    assert len(list((offline / "wandb").glob("offline-run-*"))) == 2


def test_cli_flag_mirrors_and_a_wandb_failure_is_one_warning_line(offline, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    db = tmp_path / "f.duckdb"
    spec = write_spec(tmp_path, one_sae(db))
    assert main(["run", str(spec), "--wandb", "sae-bench-test"]) == 0
    out = said(capsys)
    assert out.count("Weights & Biases mirroring is off") == 1 and "wandb package is not installed" in out
    # the run stored everything; no SAE claims a mirror
    assert rows(db, "select count(*), count(wandb_url) from saes where status = 'done'") == [(2, 0)]
    assert rows(db, "select status from runs") == [("finished",)]


@pytest.mark.parametrize("line, field", [
    ('wandb = { project = "" }', "suite.wandb.project"),
    ('wandb = { project = "a/b" }', "suite.wandb.project"),
    ('wandb = { project = "p", team = "x" }', "suite.wandb.team"),
    ('wandb = "p"', "suite.wandb"),
])
def test_bad_wandb_settings_are_refused_at_validate(tmp_path, capsys, line, field):
    spec = write_spec(tmp_path, one_sae(tmp_path / "v.duckdb", line))
    assert main(["validate", str(spec)]) == 2
    assert field in capsys.readouterr().out
