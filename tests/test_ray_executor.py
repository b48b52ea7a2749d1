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
import torch
from rich.console import Console

from conftest import TINY_SPEC, write_spec
from suite.catalog import CORE_METRICS
from suite.cli import build_parser, cmd_run
from suite.executors.events import Event, GroupStarted
from suite.executors.ray import RayExecutor, lost_reason
from suite.executors.worker import run_group
from suite.runner import run_spec
from suite.spec import load_spec

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# What a run stores that must not depend on where it ran: every number, every verdict, every
# fingerprint of the data consumed and of the weights written. Checkpoint paths, timings and
# throughput are where and when, not what, and are left out.
SAME_ROWS = {
    "saes": "select sae_id, sae_key, status, error, d_model, weights_sha256, model_sha, train_fingerprint, "
            "hook_name, arch, k, latents, loaded_dtype from saes",
    "scores": "select score_id, score_key, sae_id, eval_name, status, error, dataset_fingerprint, warning, "
              "device_name, loaded_dtype from scores",
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


def run_cli(spec: Path, *flags: str) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", str(spec), *flags]), console)
    return code, console.export_text()


def test_ray_run_stores_the_local_numbers_bit_for_bit(ray_instance, tmp_path):
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    # CPU results depend on torch's thread count (summation order): the local run gets the one
    # thread each Ray worker has here (one CPU per group, two groups at a time)
    threads = torch.get_num_threads()
    try:
        local_code, local_out = run_cli(write_spec(tmp_path, TINY_SPEC.format(db=local_db), "local.toml"),
                                        "--threads", "1")
    finally:
        torch.set_num_threads(threads)
    code, out = run_cli(write_spec(tmp_path, TINY_SPEC.format(db=ray_db), "ray.toml"), "--executor", "ray",
                        "--cpus-per-group", "1")
    assert code == local_code == 0, (out, local_out)
    for table, sql in SAME_ROWS.items():
        got, want = rows(ray_db, sql), rows(local_db, sql)
        assert got and got == want, table  # bit for bit: floats compared exactly
    # the groups ran in Ray workers, not in this process, and their progress reached this terminal
    started = re.findall(r"group (\d): (\w+) \(builtin:tiny-\w+\).* on \S+ \(pid (\d+), cpu\)", out)
    assert sorted((g, m) for g, m, _ in started) == [("1", "base"), ("2", "finetune")], out
    assert all(int(pid) != os.getpid() for *_, pid in started)
    assert "[2] training 3 SAE(s) on finetune, layers 0,1,2" in out
    assert rows(ray_db, "select count(*), min(status) from runs") == [(1, "finished")]
    # each run says what ran it and with how many torch threads (the worker's, under Ray)
    assert rows(ray_db, "select executor, threads from runs") == [("ray", 1)]
    assert rows(local_db, "select executor, threads from runs") == [("local", 1)]


def test_killed_group_fails_alone_and_the_next_run_resumes_it(ray_instance, tmp_path):
    db = tmp_path / "kill.duckdb"
    text = TINY_SPEC.format(db=db).replace("layers = [0, 1, 2]", "layers = [0, 2]").replace(
        "tokens = 12_000", "tokens = 60_000")
    spec = load_spec(write_spec(tmp_path, text))
    killed: list[int] = []

    def kill_the_finetune_worker(event: Event) -> None:
        # as soon as the driver hears the finetune group start (it then loads its model and trains
        # 60k tokens per SAE: seconds of work left to interrupt)
        if isinstance(event, GroupStarted) and event.group == 1:
            os.kill(event.pid, signal.SIGKILL)
            killed.append(event.pid)

    quiet = Console(quiet=True)
    first = run_spec(spec, console=quiet, executor=RayExecutor(on_event=kill_the_finetune_worker))
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


def test_a_node_without_the_shared_checkpoint_directory_fails_its_group_with_the_fix(ray_instance, tmp_path):
    # the driver's marker for this token is absent, as on a node that mounts another directory
    ref = ray.remote(run_group).options(num_cpus=1, max_retries=0).remote(
        0, [], str(tmp_path), "token", "cpu", 1, None)
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(ref)
    reason = lost_reason(info.value)
    assert reason.startswith(f"checkpoint directory {tmp_path} on ") and "[suite] checkpoints" in reason
