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
from suite.catalog import ABSORPTION_METRICS, CORE_METRICS
from suite.cli import build_parser, cmd_run
from suite.store import Store

CORE = set(CORE_METRICS)


def run_cli(spec: Path) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = cmd_run(build_parser().parse_args(["run", str(spec)]), console)
    return code, console.export_text()


def rows(db: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_run_stores_every_metric_for_every_sae_and_eval(tiny_run):
    _, db, code, out = tiny_run
    assert code == 0, out
    assert rows(db, "select status, count(*) from saes group by 1") == [("done", 6)]
    per_score = rows(db, "select a.model, a.layer, s.eval_name, list(m.metric) from scores s join saes a using (sae_id) "
                         "left join metrics m using (score_id) group by all order by all")
    assert [(m, layer, e) for m, layer, e, _ in per_score] == [
        (m, layer, e) for m in ("base", "finetune") for layer in (0, 1, 2) for e in ("absorption", "pylib", "pyref")]
    for *_, eval_name, metrics in per_score:
        if eval_name == "absorption":
            assert metrics == [None]  # n/a on the tiny model: a reason, no number
        else:
            assert set(metrics) == CORE
    assert rows(db, "select count(*) from metrics where value is null or isnan(value)") == [(0,)]
    notes = rows(db, "select s.eval_name, n.metric, n.reason from metric_notes n join scores s using (score_id)")
    assert len(notes) == 6 * len(ABSORPTION_METRICS)
    assert all(e == "absorption" and "letters have a ground-truth probe F1" in reason for e, _, reason in notes)
    # provenance on every row: versions and device on the run, weights and streams on SAEs and scores
    run = rows(db, "select torch_version, transformers_version, duckdb_version, sae_bench_version, device_name "
                   "from runs")[0]
    assert all(run) and run[-1] == "cpu"
    assert rows(db, "select count(*) from saes where model_sha like 'sha256:%' and train_fingerprint is not null "
                    "and weights_sha256 is not null and hook_name like 'model.layers.%'") == [(6,)]
    fingerprints = rows(db, "select eval_name, count(distinct dataset_fingerprint) from scores "
                            "where eval_kind = 'core' group by 1 order by 1")
    assert fingerprints == [("pylib", 1), ("pyref", 1)]  # every SAE scored on the same tokens


def test_density_histograms_count_every_latent(tiny_run):
    _, db, *_ = tiny_run
    totals = rows(db, "select s.score_id, sum(d.latents), max(a.latents) from latent_density d join scores s "
                      "using (score_id) join saes a using (sae_id) group by 1")
    assert len(totals) == 12 and all(total == latents for _, total, latents in totals)
    never = rows(db, "select d.latents, m.value * a.latents from latent_density d join metrics m using (score_id) "
                     "join scores s using (score_id) join saes a using (sae_id) "
                     "where d.bin = -1 and m.metric = 'dead_fraction'")
    assert all(abs(count - dead) < 1e-9 for count, dead in never)


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
    assert rows(db, "select count(*) from layer_summary where l0 > k") == [(0,)]
    assert rows(db, "select min(l0) from layer_summary")[0][0] > 0
    vocab = 1024  # the tiny recipe's BPE vocabulary: a uniform guess costs ln(1024) = 6.93 nats
    (worst,) = rows(db, "select max(ce_clean) from layer_summary where model = 'base'")[0]
    assert worst < 6.93 - 0.5
    # zero-ablating the last layer leaves the model no information: it must cost loss
    assert rows(db, "select count(*) from layer_summary where layer = 2 and ce_zero <= ce_clean + 0.5") == [(0,)]
    assert vocab == 1024


def test_health_view_agrees_with_gate_rows_and_thresholds(tiny_run):
    _, db, *_ = tiny_run
    gates = rows(db, "select s.eval_name, g.metric, g.op, g.threshold_min, g.threshold_max, g.value, g.passed "
                     "from gates g join scores s using (score_id)")
    assert len(gates) == 6 * (2 * 3 + 1)  # three default gates per dataset eval, absorption's on its own score
    expected = {"loss_recovered": (">=", 0.6, None), "l0": ("between", 20, 200), "dead_fraction": ("<=", None, 0.2),
                "absorption": ("<=", None, 0.35)}
    for eval_name, metric, op, lo, hi, value, passed in gates:
        assert (op, lo, hi) == expected[metric]
        assert (metric == "absorption") == (eval_name == "absorption")
        if metric == "absorption":  # the tiny model's probes decode no letter: n/a, never a pass
            assert value is None and passed is None
            continue
        assert passed == ((lo is None or value >= lo) and (hi is None or value <= hi))
    # the view's n/N equals an independent count of passed gate rows
    independent = dict((s, n) for s, n in rows(db, "select score_id, sum(passed::int) from gates group by all"))
    for score_id, eval_name, passed, total in rows(db, "select score_id, eval_name, gates_passed, gates_total "
                                                       "from health"):
        assert passed == (independent[score_id] or 0) and total == (0 if eval_name == "absorption" else 3)
    # gate values are the stored metric values, not recomputed ones
    assert rows(db, "select count(*) from gates g join metrics m using (score_id, metric) "
                    "where g.value != m.value") == [(0,)]


def test_train_log_and_checkpoints(tiny_run):
    _, db, *_ = tiny_run
    for sae_id, path, k in rows(db, "select sae_id, checkpoint_path, k from saes"):
        log = rows(db, "select step, tokens, fvu, l0 from train_log where sae_id = ? order by step", [sae_id])
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
    assert "6 SAE(s) already trained and scored" in out and "0 SAE(s) trained" in out
    assert rows(db, "select * from metrics order by all") == before
    assert rows(db, "select * from gates order by all") == gates_before
    assert rows(db, "select count(*), sum(saes_to_train), sum(scores_to_run) from runs") == [(2, 6, 18)]


def test_adding_an_eval_scores_only_and_renaming_an_alias_reruns_nothing(tmp_path):
    db = tmp_path / "grow.duckdb"
    text = TINY_SPEC.format(db=db).replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [0, 2]")
    code, _ = run_cli(write_spec(tmp_path, text, "a.toml"))
    assert code == 0
    saes = rows(db, "select sae_id, finished_at, checkpoint_path from saes order by 1")
    metrics = rows(db, "select * from metrics order by all")
    more = text + ('\n[eval.extra]\ndataset = { path = "builtin:pylib", split = "test" }\ntokens = 512\n'
                   'sparsity_tokens = 1024\nctx_len = 64\nbatch_size = 8\n')
    code, out = run_cli(write_spec(tmp_path, more, "b.toml"))
    assert code == 0 and "0 SAE(s) trained or imported, 2 score(s) computed" in out
    assert rows(db, "select sae_id, finished_at, checkpoint_path from saes order by 1") == saes  # nothing retrained
    assert set(metrics) <= set(rows(db, "select * from metrics order by all"))  # earlier scores untouched
    assert rows(db, "select count(*) from current_scores where eval_name = 'extra'") == [(2,)]
    renamed = more.replace("[models.base]", "[models.renamed]").replace('models = ["base"]', 'models = ["renamed"]')
    code, out = run_cli(write_spec(tmp_path, renamed, "c.toml"))
    assert code == 0 and "0 score(s) computed" in out and "2 SAE(s) already trained and scored" in out
    assert rows(db, "select distinct model from saes") == [("renamed",)]  # the label follows the spec
    assert rows(db, "select sae_id, finished_at, checkpoint_path from saes order by 1") == saes


def test_a_diverging_sae_fails_alone(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "nan.duckdb").replace("lr = 1e-3", "lr = [1e-3, 1e30]").replace(
        'models = ["base", "finetune"]', 'models = ["base"]').replace("layers = [0, 1, 2]", "layers = [1]")
    code, out = run_cli(write_spec(tmp_path, text))
    assert code == 1
    status = dict(rows(tmp_path / "nan.duckdb", "select lr, status from saes"))
    assert status == {1e-3: "done", 1e30: "failed"}
    (error,) = rows(tmp_path / "nan.duckdb", "select error from saes where status = 'failed'")[0]
    assert error.startswith("diverged at step ") and "(loss=" in error and "lower lr" in error
    assert rows(tmp_path / "nan.duckdb", "select count(*) from scores s join saes a using (sae_id) "
                                         "where a.status = 'failed'") == [(0,)]


def test_missing_dataset_fails_its_scores_with_a_clear_error(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "m.duckdb").replace(
        'dataset = {{ path = "builtin:pylib", split = "test" }}'.replace("{{", "{").replace("}}", "}"),
        f'dataset = {{ path = "json", data_files = "{tmp_path}/missing.jsonl", split = "train" }}').replace(
        'models = ["base", "finetune"]', 'models = ["base"]')
    code, out = run_cli(write_spec(tmp_path, text))
    assert code == 1
    assert rows(tmp_path / "m.duckdb", "select status, count(*) from saes group by 1") == [("done", 3)]
    errors = rows(tmp_path / "m.duckdb", "select status, error from scores where eval_name = 'pylib'")
    assert len(errors) == 3
    for status, error in errors:
        assert status == "failed" and "cannot load dataset json:train" in error and "missing.jsonl" in error
    assert rows(tmp_path / "m.duckdb", "select count(*) from current_scores where eval_name = 'pyref'") == [(3,)]


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
            if db.exists() and store.query("select count(*) from current_scores")[0][0] >= 6:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never finished its first model")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = rows(db, "select sae_id from saes where status = 'done' order by 1")
    metrics_before = rows(db, "select * from metrics order by all")
    assert len(done_before) >= 3
    # every score has all its metrics: no half-written score
    assert rows(db, "select count(*) from (select score_id from scores s left join metrics m using (score_id) "
                    "where s.eval_kind = 'core' group by score_id having count(m.metric) != ?)", [len(CORE)]) == [(0,)]
    code, out = run_cli(spec)
    assert code == 0
    assert rows(db, "select count(*) from saes where status = 'done'") == [(6,)]
    kept = rows(db, "select * from metrics where score_id in (select unnest(?)) order by all",
                [list({m[0] for m in metrics_before})])
    assert kept == metrics_before


def test_finish_score_is_all_or_nothing(tmp_path):
    from suite.grid import score_tasks, trained_saes
    from suite.health import DEFAULT_THRESHOLDS, GatePolicy, evaluate_gates
    from suite.jobs import Job, ScoreResult
    from suite.spec import load_spec

    spec = load_spec(write_spec(tmp_path, TINY_SPEC.format(db=tmp_path / "t.duckdb")))
    job = Job(trained_saes(spec)[0].ref, train=True, scores=score_tasks(spec))
    store = Store(tmp_path / "t.duckdb")
    store.init()
    store.register_saes("r1", "tiny", [job])
    store.mark_sae_running(job)
    good = {"l0": 30.0, "loss_recovered": 0.9, "dead_fraction": 0.1}
    bad = ScoreResult(metrics={**good, "kl_score": "not a number"})
    with pytest.raises(duckdb.Error):
        store.finish_score("r1", job, job.scores[0], bad,
                           (GatePolicy(DEFAULT_THRESHOLDS), evaluate_gates(DEFAULT_THRESHOLDS, good)))
    assert store.query("select status from saes") == [("running",)]
    for table in ("scores", "metrics", "gates"):
        assert store.query(f"select count(*) from {table}") == [(0,)], table
