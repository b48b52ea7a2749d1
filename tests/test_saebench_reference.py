"""Every stored core metric of a real run, recomputed by an independent implementation of
SAEBench's core eval (tests/saebench_reference.py: its own hooks, windows, encoder and
arithmetic), agrees within 1e-4 relative."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import saebench_reference as ref
from harness.builtin import corpus_files, model_dir
from suite.catalog import CORE_METRICS

EXACT = {"dead_fraction", "freq_over_1_percent", "freq_over_10_percent", "eval_tokens", "sparsity_eval_tokens"}


def test_every_core_metric_matches_saebench_conventions(tiny_run):
    _, db, code, _ = tiny_run
    assert code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        saes = con.execute("select sae_id, model_id, layer, hook, k, checkpoint_path from saes").fetchall()
        scores = con.execute("select sae_id, score_id, eval_settings from current_scores where eval_kind = 'core'"
                             ).fetchall()
        stored = {}
        for score_id, metric, value in con.execute("select score_id, metric, value from metrics").fetchall():
            stored.setdefault(score_id, {})[metric] = value
    assert len(saes) == 6 and len(scores) == 12
    models, compared = {}, 0
    for sae_id, model_id, layer, hook, k, checkpoint in saes:
        if model_id not in models:
            path = model_dir(model_id)
            models[model_id] = (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
                                AutoTokenizer.from_pretrained(path))
        model, tokenizer = models[model_id]
        ignore = {t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) if t is not None}
        sae = ref.RawTopK(load_file(Path(checkpoint) / "sae_weights.safetensors"), k)
        for score_sae, score_id, settings_json in scores:
            if score_sae != sae_id:
                continue
            settings = json.loads(settings_json)["settings"]
            dataset = settings["dataset"]
            path = corpus_files(dataset["path"].removeprefix("builtin:"))[dataset["split"]]
            per_batch = settings["batch_size"] * settings["ctx_len"]
            n_recon = -(-settings["tokens"] // per_batch)
            n_sparse = -(-settings["sparsity_tokens"] // per_batch)
            batches = ref.windows(path, tokenizer, settings["ctx_len"], settings["batch_size"], max(n_recon, n_sparse))
            expected = ref.sae_bench_metrics(ref.downstream(model, sae, batches[:n_recon], layer, hook, ignore),
                                             ref.sparsity_and_variance(model, sae, batches[:n_sparse], layer, hook,
                                                                       ignore))
            assert set(expected) == set(CORE_METRICS)
            for metric in CORE_METRICS:
                got = stored[score_id][metric]
                if metric in EXACT:
                    assert got == pytest.approx(expected[metric], abs=1e-12), (sae_id, metric, got, expected[metric])
                else:
                    assert got == pytest.approx(expected[metric], rel=1e-4, abs=1e-9), (sae_id, metric, got,
                                                                                        expected[metric])
                compared += 1
    assert compared == 12 * len(CORE_METRICS)
