"""`sae-bench run` for real on tiny built-in Llamas: what lands in DuckDB, re-runs, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from conftest import TINY_SPEC, write_spec
from harness.checkpoint import load_sae
from suite.catalog import ABSORPTION_METRICS, METRIC_NAMES
from suite.cli import build_parser, cmd_run
from suite.store import Store

CORE = set(METRIC_NAMES)


def run_cli(spec: Path) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", str(spec)]), console)
    return code, console.export_text()


def rows(db: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_run_stores_every_metric_for_every_job_and_eval(tiny_run):
    _, db, code, out = tiny_run
    assert code == 0, out
    assert rows(db, "select status, count(*) from jobs group by 1") == [("done", 6)]
    per_job_eval = rows(db, "select j.model, j.layer, m.eval_name, list(m.metric) from metrics m join jobs j "
                            "using (job_id) group by all order by all")
    assert [(m, layer, e) for m, layer, e, _ in per_job_eval] == [
        (m, layer, e) for m in ("base", "finetune") for layer in (0, 1, 2) for e in ("pylib", "pyref")]
    for *_, metrics in per_job_eval:
        assert set(metrics) == CORE - set(ABSORPTION_METRICS)
    assert rows(db, "select count(*) from metrics where value is null or isnan(value)") == [(0,)]
    # absorption has a recorded reason instead of a number, for every job and eval
    notes = rows(db, "select metric, reason from metric_notes")
    assert len(notes) == 6 * 2 * len(ABSORPTION_METRICS)
    assert all("letters have a ground-truth probe F1" in reason for _, reason in notes)


def test_token_means_carry_intervals_around_their_value(tiny_run):
    _, db, *_ = tiny_run
    from suite.catalog import INTERVAL_METRICS

    got = rows(db, "select metric, value, ci_low, ci_high from metrics where metric in (select unnest(?))",
               [list(INTERVAL_METRICS)])
    assert len(got) == 6 * 2 * len(INTERVAL_METRICS)
    for metric, value, low, high in got:
        assert low is not None and low <= value + 1e-9 and value <= high + 1e-9, (metric, value, low, high)
    assert rows(db, "select count(*) from metrics where metric = 'ce_clean' and ci_low is not null") == [(0,)]
    assert rows(db, "select count(*) from layer_summary where not (loss_recovered between "
                    "loss_recovered_ci_low and loss_recovered_ci_high)") == [(0,)]


def test_topk_l0_never_exceeds_k_and_model_learned(tiny_run):
    _, db, *_ = tiny_run
    assert rows(db, "select count(*) from layer_summary s join jobs j using (job_id) where s.l0 > j.k") == [(0,)]
    assert rows(db, "select min(l0) from layer_summary")[0][0] > 0
    vocab = 1024  # the tiny recipe's BPE vocabulary: a uniform guess costs ln(1024) = 6.93 nats
    (worst,) = rows(db, "select max(ce_clean) from layer_summary where model = 'base'")[0]
    assert worst < 6.93 - 0.5
    # zero-ablating the last layer leaves the model no information: it must cost loss
    assert rows(db, "select count(*) from layer_summary where layer = 2 and ce_zero <= ce_clean + 0.5") == [(0,)]
    assert vocab == 1024


def test_health_view_agrees_with_gate_rows_and_thresholds(tiny_run):
    _, db, *_ = tiny_run
    gates = rows(db, "select metric, op, threshold_min, threshold_max, value, passed from gates")
    assert len(gates) == 6 * 2 * 4  # four default gates per job and eval
    expected = {"loss_recovered": (">=", 0.6, None), "l0": ("between", 20, 200), "dead_fraction": ("<=", None, 0.2),
                "absorption": ("<=", None, 0.35)}
    for metric, op, lo, hi, value, passed in gates:
        assert (op, lo, hi) == expected[metric]
        if metric == "absorption":  # the tiny model's probes decode no letter: n/a, never a pass
            assert value is None and passed is None
            continue
        assert passed == ((lo is None or value >= lo) and (hi is None or value <= hi))
    # the view's n/N equals an independent count of passed gate rows
    independent = dict(((j, e), n) for j, e, n in rows(
        db, "select job_id, eval_name, sum(passed::int) from gates group by all"))
    for job_id, eval_name, passed, total in rows(db, "select job_id, eval_name, gates_passed, gates_total from health"):
        assert passed == independent[(job_id, eval_name)] and total == 3
    # gate values are the stored metric values, not recomputed ones
    assert rows(db, "select count(*) from gates g join metrics m using (job_id, eval_name, metric) "
                    "where g.value != m.value") == [(0,)]


def test_train_log_and_checkpoints(tiny_run):
    _, db, *_ = tiny_run
    for job_id, path, k in rows(db, "select job_id, checkpoint_path, k from jobs"):
        log = rows(db, "select step, tokens, fvu, l0 from train_log where job_id = ? order by step", [job_id])
        assert len(log) >= 3 and log[-1][1] <= 12_000
        assert log[-1][2] < log[0][2], "training should lower the FVU"
        assert all(l0 <= k for *_, l0 in log)
        sae = load_sae(path)
        assert sae.W_dec.shape == (96, 64) and sae.k == k


def test_tables_printed_from_the_store(tiny_run):
    _, db, _, out = tiny_run
    assert "base (builtin:tiny-base)" in out and "finetune (builtin:tiny-finetune)" in out
    lr_base_layer0 = rows(db, "select loss_recovered from layer_summary where model='base' and layer=0 "
                              "and eval_name='pyref'")[0][0]
    assert f"{100 * lr_base_layer0:.2f}%" in out


def test_rerun_trains_nothing_and_changes_no_number(tiny_run):
    spec, db, *_ = tiny_run
    before = rows(db, "select * from metrics order by all")
    gates_before = rows(db, "select * from gates order by all")
    code, out = run_cli(spec)
    assert code == 0
    assert "skipping 6 job(s) already done" in out and "0 trained" in out
    assert rows(db, "select * from metrics order by all") == before
    assert rows(db, "select * from gates order by all") == gates_before
    assert rows(db, "select count(*), sum(jobs_skipped) from runs") == [(2, 6)]


def test_a_diverging_sae_fails_alone(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "nan.duckdb").replace("lr = 1e-3", "lr = [1e-3, 1e30]").replace(
        'models = ["base", "finetune"]', 'models = ["base"]').replace("layers = [0, 1, 2]", "layers = [1]")
    code, out = run_cli(write_spec(tmp_path, text))
    assert code == 1
    status = dict(rows(tmp_path / "nan.duckdb", "select lr, status from jobs"))
    assert status == {1e-3: "done", 1e30: "failed"}
    (error,) = rows(tmp_path / "nan.duckdb", "select error from jobs where status = 'failed'")[0]
    assert "training diverged" in error and "lower lr" in error
    assert rows(tmp_path / "nan.duckdb", "select count(*) from metrics m join jobs j using (job_id) "
                                         "where j.status = 'failed'") == [(0,)]


def test_missing_dataset_fails_jobs_with_a_clear_error(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "m.duckdb").replace(
        'dataset = { path = "builtin:pylib", split = "test" }',
        f'dataset = {{ path = "json", data_files = "{tmp_path}/missing.jsonl", split = "train" }}').replace(
        'models = ["base", "finetune"]', 'models = ["base"]')
    code, out = run_cli(write_spec(tmp_path, text))
    assert code == 1
    errors = rows(tmp_path / "m.duckdb", "select status, error from jobs")
    assert len(errors) == 3
    for status, error in errors:
        assert status == "failed" and "cannot load dataset json:train" in error and "missing.jsonl" in error


def test_killed_run_loses_nothing_and_resumes(tmp_path):
    db = tmp_path / "kill.duckdb"
    text = TINY_SPEC.format(db=db).replace("tokens = 12_000", "tokens = 60_000")
    spec = write_spec(tmp_path, text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = Store(db)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # a reader in this process while the run writes
            if db.exists() and store.query("select count(*) from jobs where status = 'done'")[0][0] >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never finished its first model")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = rows(db, "select job_id from jobs where status = 'done' order by 1")
    metrics_before = rows(db, "select * from metrics order by all")
    assert len(done_before) >= 3
    # every job marked done has all its metrics: no half-written job
    assert rows(db, "select count(*) from (select job_id from metrics group by job_id "
                    "having count(*) != ?)", [2 * (len(CORE) - len(ABSORPTION_METRICS))]) == [(0,)]
    code, out = run_cli(spec)
    assert code == 0 and f"skipping {len(done_before)} job(s)" in out
    assert rows(db, "select count(*) from jobs where status = 'done'") == [(6,)]
    kept = rows(db, "select * from metrics where job_id in (select unnest(?)) order by all",
                [[j for (j,) in done_before]])
    assert kept == metrics_before


def test_finish_job_is_all_or_nothing(tmp_path):
    from suite.grid import expand
    from suite.health import DEFAULT_THRESHOLDS, evaluate_gates
    from suite.jobs import JobResult
    from suite.spec import load_spec

    job = expand(load_spec(write_spec(tmp_path, TINY_SPEC.format(db=tmp_path / "t.duckdb"))))[0]
    store = Store(tmp_path / "t.duckdb")
    store.init()
    store.prepare_jobs("r1", "tiny", [job])
    store.mark_running(job)
    good = {"l0": 30.0, "loss_recovered": 0.9, "dead_fraction": 0.1}
    bad = JobResult(metrics={"a": good, "b": {"l0": "not a number"}}, train_seconds=1, tokens_per_second=1,
                    checkpoint_path="x")
    with pytest.raises(duckdb.Error):
        store.finish_job(job, bad, {"a": evaluate_gates(DEFAULT_THRESHOLDS, good)})
    assert store.query("select status from jobs") == [("running",)]
    assert store.query("select count(*) from metrics") == [(0,)]
    assert store.query("select count(*) from gates") == [(0,)]
