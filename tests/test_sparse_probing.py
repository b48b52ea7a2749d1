"""Sparse probing (SAEBench's evals/sparse_probing): pooled activations against a plain forward
per text, the probe pieces against hand computations and scikit-learn, a planted latent with a
known answer on a real model, and chance on shuffled labels."""

from __future__ import annotations

import random

import pytest
import torch

from harness.activations import HookSite
from harness.evals.sparse_probing import pooled_activations, score_sparse_probing
from harness.evals.sparse_probing_probes import binary_task, top_k_dims, train_probe
from harness.probing_tasks import LabelledSplit, ProbingData, builtin_task
from harness.saes import TopKSae
from suite.jobs import DatasetRef, ProbingSettings, SaeSettings

LAYER = 1


@pytest.fixture(scope="module")
def tiny_lm():
    from harness.models import load_model
    from suite.jobs import ModelRef

    return load_model(ModelRef("builtin:tiny-base", name="base"), torch.device("cpu"))


@pytest.fixture(scope="module")
def texts():
    split = builtin_task("builtin:pyref-chapters", "train")
    return random.Random(0).sample(split.texts, 240)


def _sae(d: int, planted: int = 3) -> TopKSae:
    """A TopK SAE (k = all latents) with random encoder rows; latent `planted` reads 10x harder,
    so it has the largest class-mean difference whenever labels follow it."""
    g = torch.Generator().manual_seed(0)
    sae = TopKSae(d, SaeSettings(k=16, latents=16))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d, 16, generator=g) / d ** 0.5)
        sae.W_enc[:, planted] *= 10
        sae.b_enc.fill_(1.0)  # every latent fires: none is dead
        sae.b_dec.zero_()
    return sae


def test_pooled_activations_are_means_over_non_special_tokens(tiny_lm, texts):
    """Against one plain forward per text (output_hidden_states), the mean over every token but
    BOS; the SAE's pooled latents against encoding those tokens one text at a time."""
    sae = _sae(tiny_lm.d_model)
    chosen = texts[:6] + ["x"]  # a one-token text too
    llm, latents = pooled_activations(tiny_lm, chosen, {"s": (HookSite(LAYER), sae)}, ctx_len=32, batch_size=4)
    tokenizer = tiny_lm.tokenizer
    for i, text in enumerate(chosen):
        ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"][:31]
        with torch.no_grad():
            hidden = tiny_lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        tokens = hidden[LAYER + 1][0, 1:]
        assert torch.allclose(llm[HookSite(LAYER)][i], tokens.mean(0), atol=1e-5)
        assert torch.allclose(latents["s"][i], sae.encode(tokens).mean(0), atol=1e-5)


def test_binary_task_is_balanced_one_vs_rest():
    labels = ["a"] * 10 + ["b"] * 30 + ["c"] * 7
    task = binary_task(labels, "a", torch.Generator().manual_seed(0))
    assert int(task.targets.sum()) == 10 and len(task.rows) == 20
    assert all(labels[r] == "a" for r in task.rows[task.targets == 1].tolist())
    negatives = [labels[r] for r in task.rows[task.targets == 0].tolist()]
    assert set(negatives) <= {"b", "c"} and len(set(task.rows.tolist())) == 20
    assert 4 <= negatives.count("c") <= 5  # ceil(10 / 2) = 5 drawn from each other class, 10 of 10 kept


def test_top_k_dims_by_hand():
    x = torch.tensor([[1.0, 0.0, 5.0], [3.0, 0.0, 5.0], [0.0, 2.0, 1.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([1, 1, 0, 0])
    # |mean diff|: dim0 |2 - 0| = 2, dim1 |0 - 2| = 2, dim2 |5 - 1| = 4
    assert top_k_dims(x, y, 1).tolist() == [2]
    assert sorted(top_k_dims(x, y, 3).tolist()) == [0, 1, 2]


def test_torch_probe_separates_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2500, 8, generator=g)
    y = (x[:, 2] > 0).long()
    options = dict(epochs=100, lr=1e-2, batch_size=250, patience=10)
    first = train_probe(x[:2000], y[:2000], x[2000:], y[2000:], generator=torch.Generator().manual_seed(5), **options)
    again = train_probe(x[:2000], y[:2000], x[2000:], y[2000:], generator=torch.Generator().manual_seed(5), **options)
    other = train_probe(x[:2000], y[:2000], x[2000:], y[2000:], generator=torch.Generator().manual_seed(6), **options)
    assert first == again and first >= 0.95 and other >= 0.95


def _planted_data(lm, texts, sae, shuffle: bool) -> ProbingData:
    """Labels 'high' / 'low': the planted latent's pooled value above / below its median over
    the training texts (the same threshold for the test texts)."""
    _, latents = pooled_activations(lm, texts, {"s": (HookSite(LAYER), sae)}, ctx_len=128, batch_size=16)
    value = latents["s"][:, 3]
    threshold = value[:160].median()
    labels = ["high" if float(v) > threshold else "low" for v in value]
    if shuffle:
        random.Random(1).shuffle(labels)
    return ProbingData(LabelledSplit(texts[:160], labels[:160]), LabelledSplit(texts[160:], labels[160:]),
                       ["high", "low"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_planted_latent_gives_top_1_accuracy_near_one_and_shuffled_labels_chance(tiny_lm, texts, shuffle):
    sae = _sae(tiny_lm.d_model)
    settings = ProbingSettings("planted", DatasetRef("unused"), k=(1, 2))
    data = _planted_data(tiny_lm, texts, sae, shuffle)
    result = score_sparse_probing(tiny_lm, {"s": (HookSite(LAYER), sae)}, settings, data=data)["s"]
    metrics = result.metrics
    assert set(metrics) == {"llm_test_accuracy", "llm_top_1_test_accuracy", "llm_top_2_test_accuracy",
                            "sae_test_accuracy", "sae_top_1_test_accuracy", "sae_top_2_test_accuracy"}
    # 2 classes x (all dims + k=1 + k=2) x (llm, sae)
    assert len(result.probes) == 12 and {r.class_name for r in result.probes} == {"high", "low"}
    if not shuffle:
        assert metrics["sae_top_1_test_accuracy"] >= 0.95
        top1 = [r for r in result.probes if r.inputs == "sae" and r.k == 1]
        assert all(r.accuracy >= 0.95 for r in top1)
    else:
        # 80 test texts per task: chance is 0.5 with a standard deviation of ~0.056
        assert abs(metrics["sae_top_1_test_accuracy"] - 0.5) < 0.2
        assert abs(metrics["sae_test_accuracy"] - 0.5) < 0.25  # best of <= 100 epochs on the test split
    again = score_sparse_probing(tiny_lm, {"s": (HookSite(LAYER), sae)}, settings, data=data)["s"]
    assert again.metrics == metrics  # deterministic for a fixed seed


def test_a_local_dataset_loads_through_datasets_with_its_splits(tmp_path):
    """A folder with train.jsonl and test.jsonl is read by `datasets` (as a hub dataset would be):
    labels become text, each class gets up to size/2 texts drawn with the seed, classes are checked."""
    import json

    from harness.probing_tasks import ProbingDataError, load_probing_data

    for split, n in (("train", 30), ("test", 10)):
        with open(tmp_path / f"{split}.jsonl", "w") as out:
            for i in range(n * 3):
                out.write(json.dumps({"body": f"{split} text {i}", "topic": i % 3}) + "\n")
    ref = DatasetRef(str(tmp_path), column="body")
    settings = ProbingSettings("local", ref, label_column="topic", train_size=40, test_size=100)
    data = load_probing_data(settings)
    assert data.classes == ["0", "1", "2"]
    assert [data.train.labels.count(c) for c in data.classes] == [20, 20, 20]  # train_size / 2 of 30 each
    assert [data.test.labels.count(c) for c in data.classes] == [10, 10, 10]  # all 10: fewer than 50
    assert all(t.startswith("train text") for t in data.train.texts)
    assert data.warning and "test_size/2 = 50" in data.warning
    again = load_probing_data(settings)
    assert again.train.texts == data.train.texts  # seeded draw
    chosen = load_probing_data(ProbingSettings("local", ref, label_column="topic", classes=("0", "2")))
    assert chosen.classes == ["0", "2"] and set(chosen.train.labels) == {"0", "2"}
    with pytest.raises(ProbingDataError, match="'7' not found"):
        load_probing_data(ProbingSettings("local", ref, label_column="topic", classes=("0", "7")))
    with pytest.raises(Exception, match="no column 'label'"):
        load_probing_data(ProbingSettings("local", ref))


def test_builtin_tasks_are_fixed_and_split():
    for name in ("builtin:pyref-chapters", "builtin:pylib-areas"):
        train, test = builtin_task(name, "train"), builtin_task(name, "test")
        assert set(train.labels) == set(test.labels) and len(set(train.labels)) == 5
        assert not set(train.texts) & set(test.texts)
        for label in set(train.labels):  # every fifth text of a class is held out
            total = train.labels.count(label) + test.labels.count(label)
            assert test.labels.count(label) == total // 5
        assert builtin_task(name, "train").texts == train.texts
