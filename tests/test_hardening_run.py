"""Every failure inside a job fails that job alone, in one line, and leaves no SAE or run
`pending`/`running`: divergence at any step, an unwritable checkpoint directory, a full disk,
out of memory, a CUDA device that is not there, an unreachable hub, and errors or stops the
engine does not expect."""

from __future__ import annotations

import errno
import math

import pytest
import torch

from hardening_fixtures import mini_spec, rows, statuses
from suite.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _saes(db) -> dict[tuple, tuple[str, str | None]]:
    """(layer, lr) -> (status, first line of the error)."""
    return {(layer, lr): (status, error.splitlines()[0] if error else None)
            for layer, lr, status, error in rows(db, "select layer, lr, status, error from saes")}


def _nothing_left_running(db) -> None:
    runs, saes = statuses(db)
    assert not runs & {"running"} and not saes & {"pending", "running"}, (runs, saes)


def test_diverging_lr_fails_its_saes_and_exit_1(tmp_path, capsys):
    spec = mini_spec(tmp_path, layers="[0, 1]", lr="[1e-3, 1e6]")
    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    db = tmp_path / "mini.duckdb"
    saes = _saes(db)
    assert saes[(0, 1e-3)][0] == saes[(1, 1e-3)][0] == "done"
    for layer in (0, 1):
        status, error = saes[(layer, 1e6)]
        assert status == "failed" and error.startswith("diverged at step ") and "(loss=" in error, error
    assert "diverged at step" in out and "Traceback" not in out
    assert rows(db, "select count(*) from scores s join saes a using (sae_id) where a.lr = 1e6") == [(0,)]
    _nothing_left_running(db)


def test_one_sae_of_a_group_diverges_and_the_others_carry_on(tmp_path, monkeypatch):
    """Three SAEs share a forward pass; one gets a NaN weight after step 7 (not a logged step),
    one a loss that explodes from step 4; the third trains to the end."""
    from harness.models import load_model
    from harness.train import train_group
    from suite.grid import trained_saes
    from suite.jobs import Job
    from suite.spec import load_spec

    spec = load_spec(mini_spec(tmp_path, layers="[0, 1]", latents="[64, 96]", tokens=4096))
    jobs = [Job(d.ref, train=True, scores=(), log_every=5) for d in trained_saes(spec)][:3]
    lm = load_model(jobs[0].model, torch.device("cpu"))

    class Reporter:
        def __init__(self):
            self.logs = {}

        def train_log(self, job, log_rows):
            self.logs.setdefault(job.key, []).extend(log_rows)

    import harness.train as train_module

    original = train_module.SaeTrainer.create

    def create(job, d_model, device):
        """Sabotage inside the optimizer step: step 7 (0-based 6) leaves a NaN decoder weight for
        the first SAE; from step 4 the second SAE's encoder is scaled up a billion times."""
        trainer = original(job, d_model, device)
        step_done = trainer.sae.after_optimizer_step

        def after_step():
            step_done()
            with torch.no_grad():
                if job is jobs[0] and trainer.step == 6:
                    trainer.sae.W_dec[3, 0] = math.nan
                if job is jobs[1] and trainer.step == 2:
                    trainer.sae.W_enc.mul_(1e9)

        trainer.sae.after_optimizer_step = after_step
        return trainer

    monkeypatch.setattr(train_module.SaeTrainer, "create", staticmethod(create))
    reporter = Reporter()
    training = train_group(lm, jobs[0].sae.train, jobs, reporter)
    failures = [t.failure for t in training.trainers]
    assert failures[0].startswith("diverged at step 7 (loss=") and "weights not finite" in failures[0], failures[0]
    assert failures[1].startswith("diverged at step 4 (loss=") and "times the first step's" in failures[1], failures[1]
    assert failures[2] is None
    healthy = training.trainers[2]
    assert healthy.tokens == 4096 and all(bool(torch.isfinite(p).all()) for p in healthy.sae.parameters())
    assert max(r.step for r in reporter.logs[jobs[0].key]) <= 6  # no curve points from after the divergence


def test_unwritable_checkpoint_directory_fails_the_sae(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where the checkpoint directory should be")
    spec = mini_spec(tmp_path, extra="")
    spec.write_text(spec.read_text().replace('[suite]\nname = "mini"',
                                             f'[suite]\nname = "mini"\ncheckpoints = "{tmp_path}/blocker/ckpt"'))
    assert main(["run", str(spec)]) == 1
    db = tmp_path / "mini.duckdb"
    status, error = _saes(db)[(0, 1e-3)]
    assert status == "failed" and error.startswith("cannot write the checkpoint: NotADirectoryError"), error
    assert "Traceback" not in capsys.readouterr().out
    _nothing_left_running(db)


def test_disk_full_while_checkpointing(tmp_path, monkeypatch):
    import harness.formats.saelens

    def full(tensors, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(harness.formats.saelens, "save_file", full)  # where checkpoints are written
    assert main(["run", str(mini_spec(tmp_path))]) == 1
    db = tmp_path / "mini.duckdb"
    status, error = _saes(db)[(0, 1e-3)]
    assert status == "failed" and "disk full writing" in error and "free space and run again" in error, error
    assert not list((tmp_path / "mini-checkpoints").glob(".ckpt-*"))  # the half-written checkpoint is gone
    _nothing_left_running(db)


@pytest.mark.parametrize("error, phrase", [(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB"),
                                            "out of GPU memory: lower train.batch_size"),
                                           (MemoryError(), "out of memory: lower train.batch_size")])
def test_out_of_memory_fails_that_stream_only(tmp_path, monkeypatch, error, phrase):
    import harness.engine

    original = harness.engine.train_group

    def oom_for_one_lr(lm, train, group, reporter, progress=None):
        if train.lr == 2e-3:
            raise error
        return original(lm, train, group, reporter, progress)

    monkeypatch.setattr(harness.engine, "train_group", oom_for_one_lr)
    assert main(["run", str(mini_spec(tmp_path, lr="[1e-3, 2e-3]"))]) == 1
    db = tmp_path / "mini.duckdb"
    saes = _saes(db)
    assert saes[(0, 1e-3)][0] == "done"
    assert saes[(0, 2e-3)][0] == "failed" and saes[(0, 2e-3)][1].startswith(phrase), saes
    _nothing_left_running(db)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path, capsys):
    assert main(["run", str(mini_spec(tmp_path, layers="[0, 1]")), "--device", "cuda"]) == 1
    db = tmp_path / "mini.duckdb"
    for status, error in _saes(db).values():
        assert status == "failed" and "device 'cuda' requested but torch sees no CUDA GPU" in error
    assert "Traceback" not in capsys.readouterr().out
    _nothing_left_running(db)
    assert rows(db, "select status from runs") == [("failed",)]


def test_unreachable_hub_fails_at_once_with_the_hint(tmp_path, monkeypatch, capsys):
    from harness import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    hub.hub_reachable.cache_clear()
    spec = mini_spec(tmp_path)
    spec.write_text(spec.read_text().replace('id = "builtin:tiny-base"', 'id = "no-such-org/no-such-model"'))
    try:
        assert main(["run", str(spec)]) == 1
    finally:
        hub.hub_reachable.cache_clear()
    db = tmp_path / "mini.duckdb"
    status, error = _saes(db)[(0, 1e-3)]
    assert status == "failed" and "not in the local Hugging Face cache and http://127.0.0.1:9 cannot be reached" in error
    _nothing_left_running(db)


def test_an_unexpected_error_is_one_line_and_marks_the_run(tmp_path, monkeypatch, capsys):
    import harness.engine

    def boom(self, jobs):
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr(harness.engine.ModelRun, "_score_datasets", boom)
    spec = mini_spec(tmp_path)
    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "error RuntimeError: boom with a second line (run again with --debug for the traceback)"
    db = tmp_path / "mini.duckdb"
    _nothing_left_running(db)
    assert rows(db, "select status from runs") == [("failed",)]
    with pytest.raises(RuntimeError, match="boom"):
        main(["run", str(spec), "--debug"])


def test_a_stop_marks_unfinished_saes_interrupted(tmp_path, monkeypatch, capsys):
    import harness.engine

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.engine, "train_group", stop)
    assert main(["run", str(mini_spec(tmp_path, layers="[0, 1]"))]) == 130
    db = tmp_path / "mini.duckdb"
    assert {s for s, _ in _saes(db).values()} == {"interrupted"}
    assert rows(db, "select status from runs") == [("interrupted",)]
