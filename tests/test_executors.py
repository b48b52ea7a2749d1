"""Executor parts that need no Ray: grouping, events, the lost-group ledger, resource requests,
the shared checkpoint check, relayed progress, and the CLI's executor errors."""

from __future__ import annotations

import pickle
import sys
from dataclasses import replace

import pytest
from rich.console import Console

from conftest import TINY_SPEC, write_spec
from suite.cli import build_parser, cmd_run
from suite.executors import LocalExecutor, make_executor, model_groups
from suite.executors.events import (Event, Ledger, ProgressUpdate, RelayReporter, SaeFailed, SaeReady, SaeStarted,
                                    ScoreFailed, ScoreFinished, TrainLog)
from suite.executors.ray import _infeasible
from suite.executors.resources import GIB, group_request, model_config, param_count
from suite.executors.worker import NotSharedError, RelayProgress, check_shared, mark_shared
from suite.grid import score_tasks, trained_saes
from suite.jobs import DensityBin, Job, ModelRef, ScoreResult, TrainLogRow, TrainResult
from suite.spec import load_spec, parse_spec


class Recorder:
    """A JobReporter that records its calls."""

    def __init__(self):
        self.calls: list[tuple] = []

    def sae_started(self, job):
        self.calls.append(("started", job.key))

    def train_log(self, job, rows):
        self.calls.append(("log", job.key, [r.step for r in rows]))

    def sae_failed(self, job, error):
        self.calls.append(("sae_failed", job.key, error))

    def sae_ready(self, job, result):
        self.calls.append(("ready", job.key, result.checkpoint_path))

    def score_finished(self, job, task, result):
        self.calls.append(("scored", job.key, task.name, result.metrics))

    def score_failed(self, job, task, error):
        self.calls.append(("score_failed", job.key, task.name, error))


@pytest.fixture
def tiny_jobs(tmp_path) -> list[Job]:
    spec = load_spec(write_spec(tmp_path, TINY_SPEC.format(db=tmp_path / "t.duckdb")))
    return [Job(d.ref, train=True, scores=score_tasks(spec)) for d in trained_saes(spec)]


def test_groups_are_one_model_and_one_training_stream(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "g.duckdb").replace("lr = 1e-3", "lr = [1e-3, 2e-3]")
    spec = load_spec(write_spec(tmp_path, text))
    jobs = [Job(d.ref, train=True, scores=()) for d in trained_saes(spec)]
    scored_only = replace(jobs[0], train=False, checkpoint="/somewhere")
    groups = model_groups([*jobs, scored_only])
    # 2 models x 2 learning rates, each with its 3 layers; the SAE only to score forms its own group
    assert sorted(len(g) for g in groups) == [1, 3, 3, 3, 3]
    for group in groups:
        assert len({(j.model, j.sae.train if j.train else None) for j in group}) == 1


def test_events_survive_pickling_and_replay_as_the_same_reporter_calls(tiny_jobs):
    job, task = tiny_jobs[0], tiny_jobs[0].scores[0]
    direct, relayed = Recorder(), Recorder()
    events: list[Event] = []
    relay = RelayReporter(3, lambda e: events.append(pickle.loads(pickle.dumps(e))))
    calls = [
        ("sae_started", (job,)),
        ("train_log", (job, [TrainLogRow(5, 320, 1.0, 0.5, 24.0, 0.0)])),
        ("sae_ready", (job, TrainResult("/ckpt/x", 64))),
        ("score_finished", (job, task, ScoreResult({"l0": 24.0}, {"l0": (23.0, 25.0)},
                                                   density=[DensityBin(None, None, 3)]))),
        ("score_failed", (job, task, "boom")),
        ("sae_failed", (job, "diverged")),
    ]
    for name, args in calls:
        getattr(direct, name)(*args)
        getattr(relay, name)(*args)
    assert [type(e) for e in events] == [SaeStarted, TrainLog, SaeReady, ScoreFinished, ScoreFailed, SaeFailed]
    assert all(e.group == 3 for e in events)
    for event in events:
        event.apply(relayed, job)
    assert relayed.calls == direct.calls


def test_a_lost_group_fails_exactly_what_it_left_unfinished(tiny_jobs):
    done, half, untouched, failed = tiny_jobs[:4]
    first, second = done.scores[0], done.scores[1]
    reporter = Recorder()
    ledger = Ledger(reporter)
    for job in (done, half):
        ledger.apply(SaeReady(0, job.key, TrainResult("/ckpt", 64)), job)
    for task in done.scores:
        ledger.apply(ScoreFinished(0, done.key, task, ScoreResult({})), done)
    ledger.apply(ScoreFinished(0, half.key, first, ScoreResult({})), half)
    ledger.apply(ScoreFailed(0, half.key, second, "eval broke"), half)
    ledger.apply(SaeFailed(0, failed.key, "diverged"), failed)
    already = len(reporter.calls)
    lost = ledger.lose(tiny_jobs[:4], "lost: worker died")
    new = reporter.calls[already:]
    # `half` lacks its third score; `untouched` was never made; `done` and `failed` are settled
    assert new == [("score_failed", half.key, half.scores[2].name, "lost: worker died"),
                   ("sae_failed", untouched.key, "lost: worker died")]
    assert lost == 2
    assert ledger.lose(tiny_jobs[:4], "again") == 0  # nothing is failed twice


@pytest.mark.parametrize("kind", ["llama-tied", "llama-untied-gqa", "gpt2"])
def test_parameter_estimate_matches_the_instantiated_model(kind):
    import transformers

    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=500, n_embd=64, n_layer=3, n_head=4, n_positions=32,
                                         bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = model_config(ModelRef("builtin:tiny-base"))
        if kind == "llama-untied-gqa":
            config = transformers.LlamaConfig(vocab_size=700, hidden_size=64, intermediate_size=96,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(config)
    real = model.num_parameters()
    estimate = param_count(config)
    assert estimate is not None
    if kind == "llama-tied":
        assert estimate == real  # exact for a Llama with full attention
    else:  # GQA's smaller k/v projections; GPT-2's biases and position table: an upper/close bound
        assert abs(estimate - real) / real < 0.06, (estimate, real)


def test_requests_size_memory_from_the_model_and_refuse_what_no_node_holds(tiny_jobs):
    params = param_count(model_config(tiny_jobs[0].model))
    on_gpu = group_request(tiny_jobs[:3], gpus=1)
    on_cpu = group_request(tiny_jobs[:3], gpus=0)
    assert on_gpu.gpus == 1 and on_cpu.gpus == 0 and on_gpu.model_params == params
    # bf16 on a GPU; fp32 plus three SAEs' Adam state and one shuffle buffer per site on CPU
    assert on_gpu.memory >= 2 * GIB + 2 * params
    sae_state = 3 * 16 * 2 * 96 * 64
    buffers = 3 * 4 * 64 * 4 * 8 * 64
    assert on_cpu.memory >= 2 * GIB + 4 * params + sae_state + buffers
    assert on_cpu.memory - (2 * GIB + 4 * params + sae_state + buffers) < 2**20  # rounded up to a MiB
    nodes = [{"CPU": 2.0, "memory": 1.5 * GIB}, {"CPU": 8.0, "GPU": 0.0, "memory": 64 * GIB}]
    assert _infeasible(on_cpu, nodes) is None
    why = _infeasible(on_gpu, nodes)
    assert why is not None and "needs 1 GPU, 1 CPU" in why and "offers 0 GPU, 8 CPU, 64.0 GiB" in why


def test_workers_must_see_the_drivers_checkpoint_directory(tmp_path):
    with pytest.raises(NotSharedError, match="not the driver's.*every node mounts"):
        check_shared(tmp_path, "abc")
    mark_shared(tmp_path / "ckpt", "abc")
    check_shared(tmp_path / "ckpt", "abc")
    with pytest.raises(NotSharedError):
        check_shared(tmp_path / "ckpt", "another run")


def test_relayed_progress_is_throttled_and_ends_complete():
    sent: list[ProgressUpdate] = []
    with RelayProgress(1, sent.append) as progress:
        task = progress.add_task("training", total=1000)
        for step in range(1, 1001):
            progress.update(task, completed=step)
    assert sent[0].description == "training" and sent[0].completed == 0
    assert sent[-1].completed == 1000 and sent[-1].total == 1000
    assert len(sent) < 20  # not one event per update


def run_cli(*argv: str) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", *argv]), console)
    return code, console.export_text()


@pytest.mark.parametrize("flags, named", [(("--address", "auto"), "--address is"),
                                          (("--cpus-per-group", "2"), "--cpus-per-group is"),
                                          (("--address", "auto", "--cpus-per-group", "2"),
                                           "--address and --cpus-per-group are")])
def test_ray_flags_without_the_ray_executor_are_refused_before_anything_is_written(tmp_path, flags, named):
    db = tmp_path / "a.duckdb"
    spec = write_spec(tmp_path, TINY_SPEC.format(db=db))
    code, out = run_cli(str(spec), *flags)
    assert code == 2 and out.strip() == f"error {named} for the ray executor: add --executor ray (or set " \
                                        "[suite] executor = \"ray\")"
    assert not db.exists()


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    db = tmp_path / "r.duckdb"
    spec = write_spec(tmp_path, TINY_SPEC.format(db=db).replace('name = "tiny"', 'name = "tiny"\nexecutor = "ray"'))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, out = run_cli(str(spec))
    assert code == 2 and "pip install 'sae-bench-suite[ray]'" in out and len(out.strip().splitlines()) == 1
    assert not db.exists()
    assert isinstance(make_executor("local"), LocalExecutor)  # the default needs no Ray


def test_unknown_executor_in_a_spec_is_a_spec_error():
    from suite.spec import SpecError

    text = TINY_SPEC.format(db="x.duckdb").replace('name = "tiny"', 'name = "tiny"\nexecutor = "dask"')
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.toml")
    assert info.value.problems == ["suite.executor: expected one of 'local' or 'ray', got 'dask'"]


def test_an_address_nobody_answers_fails_fast_with_the_fix():
    import socket

    from suite.executors import ExecutorError
    from suite.executors.ray import _check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ExecutorError, match=rf"no Ray cluster answers at 127.0.0.1:{port} .*ray start --head"):
        _check_reachable(f"127.0.0.1:{port}")  # what RayExecutor.open does before ray.init
