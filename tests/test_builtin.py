"""Built-in models: deterministic builds with a weights hash, and the demo models' spelling
dictionary (the knowledge SAEBench's first-letter absorption eval needs)."""

from __future__ import annotations

import os

import pytest
import torch

from harness import builtin


def test_tiny_model_weights_are_identical_across_fresh_builds(tmp_path, monkeypatch):
    """Two builds in fresh cache dirs, under different caller thread settings, hash the same; the
    caller's thread setting survives the build."""
    hashes = []
    threads = torch.get_num_threads()
    try:
        for run, caller_threads in enumerate((1, 2)):
            monkeypatch.setenv("SAE_BENCH_CACHE", str(tmp_path / f"cache{run}"))
            torch.set_num_threads(caller_threads)
            hashes.append(builtin.weights_sha256("builtin:tiny-base"))
            assert torch.get_num_threads() == caller_threads
    finally:
        torch.set_num_threads(threads)
    assert hashes[0] == hashes[1]
    assert len(hashes[0]) == 64 and int(hashes[0], 16) >= 0


def test_weights_hash_covers_every_tensor(tmp_path, monkeypatch):
    """The hash is over names, dtypes, shapes and bytes: it changes when one weight changes."""
    import hashlib

    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("SAE_BENCH_CACHE", str(tmp_path / "cache"))
    directory = builtin.model_dir("builtin:tiny-base")
    before = builtin.weights_sha256("builtin:tiny-base")
    (path,) = directory.glob("*.safetensors")
    tensors = load_file(str(path))
    digest = hashlib.sha256()  # the documented recipe, recomputed here
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.numpy().tobytes())
    assert digest.hexdigest() == before
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert builtin.weights_sha256("builtin:tiny-base") != before


def test_spelling_dictionary_covers_every_word_equally():
    """Each pass of the dictionary has one line per single-token word, in a new order; lines are
    "\\n{word} {FIRST LETTER}" and never the absorption eval's template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(builtin.model_dir("builtin:tiny-base"))
    words = builtin.single_token_words(tokenizer)
    assert len(words) > 100 and all(w.strip().isalpha() and w.strip().isascii() for w in words)
    assert builtin.spelling_entry(" cat") == "\n cat C" and builtin.spelling_entry("mber") == "\nmber M"
    lines = [tokenizer(builtin.spelling_entry(w), add_special_tokens=False)["input_ids"] for w in words]
    per_pass = sum(map(len, lines))
    rows = builtin._spelling_matrix(tokenizer, ctx_len=64, rows=(2 * per_pass) // 63, seed=3)
    assert rows.shape[1] == 64 and bool((rows[:, 0] == tokenizer.bos_token_id).all())
    stream = rows[:, 1:].reshape(-1).tolist()
    first_pass = tokenizer.decode(stream[:per_pass])
    assert sorted(first_pass.split("\n")[1:]) == sorted(e[1:] for e in map(builtin.spelling_entry, words))
    assert "has the first letter" not in first_pass
    again = builtin._spelling_matrix(tokenizer, ctx_len=64, rows=(2 * per_pass) // 63, seed=3)
    assert torch.equal(rows, again)
    second_pass = tokenizer.decode(stream[per_pass:2 * per_pass - 64])
    assert second_pass.split("\n")[1:100] != first_pass.split("\n")[1:100]  # a new order


def test_only_the_demo_models_read_the_dictionary():
    assert builtin.TINY.spelling_share == 0 and builtin.TINY.tie_embeddings
    assert builtin.DEMO.spelling_share > 0 and not builtin.DEMO.tie_embeddings
    assert builtin.builtin_model("builtin:demo-finetune").recipe == builtin.DEMO


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SAE_BENCH_DEMO_TESTS"),
                    reason="builds the demo models (~2 min on 2 CPUs when not cached); set SAE_BENCH_DEMO_TESTS=1")
@pytest.mark.parametrize("model_id", ["builtin:demo-base", "builtin:demo-finetune"])
def test_demo_models_can_spell_for_the_absorption_eval(model_id):
    """>= 20 letters with ground-truth probe F1 > 0.6 (SAEBench's min_feats_for_eval) at a demo
    layer, with the demo spec's absorption settings."""
    from harness.absorption import AbsorptionEval
    from harness.models import load_model
    from suite.jobs import AbsorptionSettings, ModelRef

    lm = load_model(ModelRef(model_id, name="m"), torch.device("cpu"))
    evaluation = AbsorptionEval(lm, [1, 3, 5], AbsorptionSettings(words_per_context=16, sparse_probe_batch_size=256))
    passing = {layer: len(evaluation.good_letters(layer)) for layer in (1, 3, 5)}
    assert max(passing.values()) >= 20, passing
    assert evaluation.not_applicable(max(passing, key=passing.get)) is None
