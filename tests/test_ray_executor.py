"""The Ray executor on a local Ray instance (2 CPUs): the same stored numbers as the local
executor, and a killed group task that loses only its own jobs, which the next run resumes.

Skipped when Ray is not installed (`pip install '.[ray]'`; the dev extra includes it). One Ray
instance serves the module: it takes ~5-10 s to start on a small machine.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from conftest import TINY_SPEC, write_spec
from suite.catalog import CORE_METRICS
from suite.cli import build_parser, cmd_run
from suite.executors.events import Event, GroupStarted, SaeStarted
from suite.executors.ray import RayExecutor
from suite.runner import run_spec
from suite.spec import load_spec

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# What a run stores that must not depend on where it ran: every number, every verdict, every
# fingerprint of the data consumed and of the weights written. Checkpoint paths, timings and
# throughput are where and when, not what, and are left out.
SAME_ROWS = {
    "saes": "select sae_id, sae_key, status, error, d_model, weights_sha256, model_sha, train_fingerprint, "
            "hook_name, arch, k, latents from saes",
    "scores": "select score_id, score_key, sae_id, eval_name, status, error, dataset_fingerprint, warning, "
              "device_name from scores",
    "metrics": "select * from metrics",
    "metric_notes": "select * from metric_notes",
    "latent_density": "select * from latent_density",
    "absorption_letters": "select * from absorption_letters",
    "train_log": "select * from train_log",
    "gates": "select * from gates",
}


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql + " order by all", params or []).fetchall()


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def test_ray_run_stores_the_local_numbers_bit_for_bit(tiny_run, ray_instance, tmp_path):
    _, local_db, local_code, _ = tiny_run
    db = tmp_path / "ray.duckdb"
    spec = write_spec(tmp_path, TINY_SPEC.format(db=db))
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", str(spec), "--executor", "ray"]), console)
    out = console.export_text()
    assert code == local_code == 0, out
    for table, sql in SAME_ROWS.items():
        got, want = rows(db, sql), rows(local_db, sql)
        assert got and got == want, table  # bit for bit: floats compared exactly
    # the groups ran in Ray workers, not in this process, and their progress reached this terminal
    started = re.findall(r"group (\d): (\w+) \(builtin:tiny-\w+\).* on \S+ \(pid (\d+), cpu\)", out)
    assert sorted((g, m) for g, m, _ in started) == [("1", "base"), ("2", "finetune")], out
    assert all(int(pid) != os.getpid() for *_, pid in started)
    assert "[2] training 3 SAE(s) on finetune, layers 0,1,2" in out
    assert rows(db, "select count(*), min(status) from runs") == [(1, "finished")]


def test_killed_group_fails_alone_and_the_next_run_resumes_it(ray_instance, tmp_path):
    db = tmp_path / "kill.duckdb"
    text = TINY_SPEC.format(db=db).replace("layers = [0, 1, 2]", "layers = [0, 2]").replace(
        "tokens = 12_000", "tokens = 40_000")
    spec = load_spec(write_spec(tmp_path, text))
    pids: dict[int, int] = {}
    killed: list[int] = []

    def kill_finetune_once_training(event: Event) -> None:
        if isinstance(event, GroupStarted):
            pids[event.group] = event.pid
        if isinstance(event, SaeStarted) and event.group == 1 and not killed:
            os.kill(pids[1], signal.SIGKILL)  # the worker process running the finetune group
            killed.append(pids[1])

    quiet = Console(quiet=True)
    first = run_spec(spec, console=quiet, executor=RayExecutor(on_event=kill_finetune_once_training))
    assert killed and first.exit_code == 1
    status = rows(db, "select model, layer, status, error from saes")
    assert [(m, layer, s) for m, layer, s, _ in status] == [
        ("base", 0, "done"), ("base", 2, "done"), ("finetune", 0, "failed"), ("finetune", 2, "failed")]
    for model, _, _, error in status:
        if model == "finetune":
            assert error.startswith("lost: the Ray worker running this group died") and "run again" in error
    # the lost SAEs left no score and no checkpoint; the finished group's scores are whole
    assert rows(db, "select count(*) from scores join saes using (sae_id) where model = 'finetune'") == [(0,)]
    assert rows(db, "select count(*) from scores where status = 'done'") == [(2 * 3,)]
    assert rows(db, "select count(*) from (select score_id from scores s left join metrics m using (score_id) "
                    "where s.eval_kind = 'core' group by score_id having count(m.metric) != ?)",
                [len(CORE_METRICS)]) == [(0,)]
    base_before = rows(db, "select sae_id, finished_at, weights_sha256 from saes where model = 'base'")
    metrics_before = rows(db, "select * from metrics")

    second = run_spec(spec, console=quiet, executor=RayExecutor())
    assert second.exit_code == 0 and second.trained == 2 and second.scored == 2 * 3
    assert rows(db, "select model, status, count(*) from saes group by all") == [
        ("base", "done", 2), ("finetune", "done", 2)]
    assert rows(db, "select sae_id, finished_at, weights_sha256 from saes where model = 'base'") == base_before
    assert set(metrics_before) <= set(rows(db, "select * from metrics"))
    assert rows(db, "select count(*) from current_scores") == [(4 * 3,)]
