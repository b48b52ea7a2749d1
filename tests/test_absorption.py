"""Absorption (SAEBench's first-letter eval): each rule on hand-computed numbers, the probes
against independent computations, planted SAEs with a known answer, n/a before any SAE work,
and the prompts on a real model."""

from __future__ import annotations

import math

import pytest
import torch

from harness.absorption import (
    LETTERS,
    AbsorptionEval,
    Word,
    absorption_fraction,
    alpha_vocabulary,
    f1_per_letter,
    first_letter,
    first_letter_prompt,
    fit_logistic_balanced,
    is_full_absorption,
    letter_absorption,
    train_multi_probe,
)
from harness.saes import TopKSae
from suite.jobs import AbsorptionSettings, SaeSettings

# ------------------------------------------------------------------ step 5 rules, by hand


def test_fraction_zero_when_main_latents_carry_the_projection():
    assert absorption_fraction(1.0, 1.0, [0.9]) == 0.0
    assert absorption_fraction(1.0, 1.2, [0.9]) == 0.0


def test_fraction_zero_when_absorbers_carry_under_40_percent():
    assert absorption_fraction(1.0, 0.2, [0.39]) == 0.0
    assert absorption_fraction(1.0, 0.0, [0.2, 0.1, 0.05]) == 0.0  # 0.35 < 0.4
    assert absorption_fraction(-1.0, -2.0, [0.9]) == 0.0  # probe inactive: 0.9 / -1 < 0.4


def test_fraction_one_when_main_latents_do_not_project():
    assert absorption_fraction(1.0, 0.0, [0.5]) == 1.0
    assert absorption_fraction(1.0, -0.3, [0.5]) == 1.0


def test_fraction_partial_by_hand():
    # u = min(A, P - M) = min(0.6, 1 - 0.3) = 0.6 -> 0.6 / (0.6 + 0.3)
    assert absorption_fraction(1.0, 0.3, [0.6]) == pytest.approx(0.6 / 0.9)
    # A capped by what is unaccounted: u = min(0.9, 1 - 0.5) = 0.5 -> 0.5 / 1.0
    assert absorption_fraction(1.0, 0.5, [0.5, 0.4]) == pytest.approx(0.5)


def test_fraction_uses_at_most_three_absorbers():
    # top 3 of [0.2, 0.1, 0.1, 0.1] = 0.4 reaches the threshold; the fourth adds nothing
    assert absorption_fraction(1.0, 0.0, [0.1, 0.2, 0.1, 0.1]) == 1.0
    assert absorption_fraction(1.0, 0.3, [0.15, 0.15, 0.1, 0.1]) == pytest.approx(0.4 / 0.7)


def test_full_absorption_rules():
    assert is_full_absorption(1.0, [0.0, 0.0], top_cos=0.5, top_projection=0.4)
    assert not is_full_absorption(1.0, [0.0, 1e-3], top_cos=0.5, top_projection=0.9)  # a main latent fired
    assert is_full_absorption(1.0, [0.0, 0.9e-8], top_cos=0.5, top_projection=0.9)  # below EPS = 1e-8
    assert not is_full_absorption(1.0, [0.0], top_cos=0.02, top_projection=0.9)  # top latent not aligned
    assert is_full_absorption(1.0, [0.0], top_cos=0.025, top_projection=0.9)  # cos threshold is inclusive
    assert not is_full_absorption(-1.0, [0.0], top_cos=0.5, top_projection=0.9)  # probe not active
    assert not is_full_absorption(1.0, [0.0], top_cos=0.5, top_projection=0.39)  # carries < 40%


def test_planted_letter_absorption_one_letter():
    """Direction e0 is the letter; latent 0 is its main latent, latent 1 (decoder (e0+e1)/sqrt2)
    fires instead of it on 4 of 10 words, latent 2 is unrelated."""
    d = 4
    decoder = torch.zeros(3, d)
    decoder[0, 0] = 1
    decoder[1, :2] = 1 / math.sqrt(2)
    decoder[2, 3] = 1
    probe = torch.tensor([2.0, 0, 0, 0])
    x = torch.zeros(10, d)
    x[:, 0] = 1.0
    latents = torch.zeros(10, 3)
    latents[:6, 0] = 1.0  # main latent fires
    latents[6:, 1] = math.sqrt(2)  # absorber carries the whole projection: sqrt2 * cos 0.707 = 1
    latents[:, 2] = 0.7
    result = letter_absorption(x, latents, decoder, probe, main_ids=[0])
    assert result.words == 10
    assert result.mean_fraction == pytest.approx(0.4)
    assert result.full_rate == pytest.approx(0.4)
    # partial: the main latent keeps half, the absorber takes the other half -> 0.5 on those words
    latents[6:, 0] = 0.5
    latents[6:, 1] = 0.5 * math.sqrt(2)
    partial = letter_absorption(x, latents, decoder, probe, main_ids=[0])
    assert partial.mean_fraction == pytest.approx(4 * 0.5 / 10)
    assert partial.full_rate == 0.0
    # no absorption: the main latent always fires
    latents[:, 0], latents[:, 1] = 1.0, 0.0
    clean = letter_absorption(x, latents, decoder, probe, main_ids=[0])
    assert clean.mean_fraction == 0.0 and clean.full_rate == 0.0


# ------------------------------------------------------------------ probes against independent computations


def test_f1_by_hand():
    y = torch.tensor([0, 0, 1, 1, 2])
    scores = torch.full((5, 26), -1.0)
    scores[[0, 2], 0] = 1.0  # letter a: tp 1 (row 0), fp 1 (row 2), fn 1 (row 1) -> 2/(2+1+1)
    scores[[2, 3], 1] = 1.0  # letter b: perfect
    f1 = f1_per_letter(scores, y)
    assert f1[0] == pytest.approx(0.5) and f1[1] == 1.0
    assert f1[2] == 0.0  # c never predicted: tp 0 -> 0
    assert f1[3] == 0.0  # d: no words, no predictions -> 0 (sklearn's zero_division)


def test_multi_probe_is_saebench_training_loop():
    """Our batched trainer against SAEBench's loop written out (probing.py `train_multi_probe`,
    `_run_probe_training`): nn.Linear, DataLoader batches, BCEWithLogitsLoss(pos_weight=neg/pos),
    Adam with weight decay, ExponentialLR stepped once per epoch. Two layers side by side give
    each the weights it gets alone."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    torch.manual_seed(0)
    n, d, epochs = 150, 8, 3
    y = torch.arange(n) % 26
    xs = torch.randn(2, n, d)
    init = (torch.randn(2, 26, d) * 0.1, torch.randn(2, 26) * 0.1)
    ours_w, ours_b = train_multi_probe(xs, y, batch_size=64, epochs=epochs, lr=1e-2, end_lr=1e-5,
                                       weight_decay=1e-4, generator=torch.Generator().manual_seed(5), init=init)
    for layer in range(2):
        probe = torch.nn.Linear(d, 26)
        with torch.no_grad():
            probe.weight.copy_(init[0][layer])
            probe.bias.copy_(init[1][layer])
        one_hot = torch.nn.functional.one_hot(y, 26).float()
        loader = DataLoader(TensorDataset(xs[layer], one_hot), batch_sampler=BatchSampler(
            RandomSampler(range(n), generator=torch.Generator().manual_seed(5)), 64, drop_last=False))
        pos = one_hot.sum(0)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(n - pos) / pos)
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=math.exp(math.log(1e-5 / 1e-2) / epochs))
        for _ in range(epochs):
            for batch_x, batch_y in loader:
                optimizer.zero_grad()
                loss = loss_fn(probe(batch_x), batch_y)
                loss.backward()
                optimizer.step()
            scheduler.step()
        assert torch.allclose(ours_w[layer], probe.weight, atol=1e-6)
        assert torch.allclose(ours_b[layer], probe.bias, atol=1e-6)


def test_balanced_logistic_regression_solves_sklearns_problem():
    """x = [+1, -1] with labels [1, 0]: balanced weights are 1, the intercept is 0 by symmetry and
    w solves w = 2 sigmoid(-w) (d/dw of 2 log(1 + e^-w) + w^2 / 2); found here by bisection."""
    lo, hi = 0.0, 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid < 2 / (1 + math.exp(mid)) else (lo, mid)
    w, b = fit_logistic_balanced(torch.tensor([[[1.0], [-1.0]]]), torch.tensor([[1, 0]]))
    assert float(w[0, 0]) == pytest.approx(lo, abs=1e-6) and float(b[0]) == pytest.approx(0.0, abs=1e-6)


def test_balanced_logistic_regression_is_stationary():
    """On random unbalanced data the solution zeroes the gradient of
    sum_i s_i logloss_i + |w|^2 / 2 with s_i = n / (2 n_class), computed here in numpy."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 200, 4))
    y = (rng.random((3, 200)) < np.array([[0.1], [0.3], [0.5]])).astype(np.int64)
    y[:, 0] = 1
    w, b = fit_logistic_balanced(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    for c in range(3):
        n, pos = 200, y[c].sum()
        s = np.where(y[c] == 1, n / (2 * pos), n / (2 * (n - pos)))
        xc = x[c].astype(np.float32).astype(np.float64)
        p = 1 / (1 + np.exp(-(xc @ w[c].double().numpy() + float(b[c]))))
        grad_w = xc.T @ (s * (p - y[c])) + w[c].double().numpy()
        grad_b = (s * (p - y[c])).sum()
        assert np.abs(grad_w).max() < 1e-4 and abs(grad_b) < 1e-4


# ------------------------------------------------------------------ planted letters, whole pipeline (steps 3-6)


def _planted(absorbing: bool, sigma: float = 0.03, per_letter: int = 40, absorbed_letters: int = 6):
    """26 letter directions (orthonormal, random) in 128 dims, 40 words per letter, isotropic
    noise sigma per coordinate; every 5th word of a letter is a test word. In the first 6
    letters the words with i % 8 < 3 are absorbed: each carries its own token direction v_w (one
    per word, like a token-specific latent in a real SAE). The SAE has a main latent per letter
    (encoder u_l, decoder u_l), an absorber per absorbed word (encoder sqrt2 v_w) and 10 unrelated
    latents. With `absorbing`, the main latent's encoder also reads -1.5 v_w, so it is silent on
    absorbed words, and the absorber's decoder is (u_l + v_w)/sqrt2: it carries the letter. Without,
    the absorber's decoder is v_w and the main latent always fires.

    Known answer: an absorbed word has main projection 0 and an absorber carrying ~all of the
    probe projection (fraction 1, full absorption); any other word has no absorber (fraction 0).
    Test words of absorbed letters: i in {0, 5, ..., 35}, i % 8 = 0, 5, 2, 7, 4, 1, 6, 3 -> 3 of 8
    absorbed. Mean over 26 letters: 6 * (3/8) / 26 = 0.0865 (and 0 without absorption)."""
    g = torch.Generator().manual_seed(0)
    d = 128
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q = q.T.float()  # orthonormal rows
    words, train, test, absorbed = [], [], [], {}
    for letter in range(26):
        for i in range(per_letter):
            index = len(words)
            words.append(Word(index, " " + LETTERS[letter] * 2 + LETTERS[i % 26]))
            if letter < absorbed_letters and i % 8 < 3:
                absorbed[index] = 26 + len(absorbed)
            (test if i % 5 == 0 else train).append(index)

    def activation(index: int) -> torch.Tensor:
        x = q[words[index].label] + sigma * torch.randn(d, generator=g)
        return x + q[absorbed[index]] if index in absorbed else x

    train_x = torch.stack([activation(i) for i in train])
    test_x = torch.stack([activation(i) for i in test])
    fresh_x = torch.stack([activation(i) for i in test])  # the absorption step's own prompts: new noise
    latents = 26 + len(absorbed) + 10
    sae = TopKSae(d, SaeSettings(k=4, latents=latents))
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.b_enc.fill_(-0.2)
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        for letter in range(26):
            sae.W_enc[:, letter] = q[letter]
            sae.W_dec[letter] = q[letter]
        for index, j in absorbed.items():
            letter = words[index].label
            sae.W_enc[:, j] = math.sqrt(2) * q[j]
            if absorbing:
                sae.W_enc[:, letter] -= 1.5 * q[j]
                sae.W_dec[j] = (q[letter] + q[j]) / math.sqrt(2)
            else:
                sae.W_dec[j] = q[j]
        unrelated = torch.randn(10, d, generator=g)
        sae.W_dec[latents - 10:] = unrelated / unrelated.norm(dim=1, keepdim=True)
        sae.W_enc[:, latents - 10:] = sae.W_dec[latents - 10:].T
    split = {"train": ([words[i] for i in train], {0: train_x}), "test": ([words[i] for i in test], {0: test_x})}
    return split, {0: fresh_x}, sae


# Default settings (SAEBench's, with the k-sparse probe batch chosen from the 832 train words:
# 41, 21 steps per epoch) over three eval seeds: each seed draws its own probe inits and batches.
@pytest.mark.parametrize("seed", [42, 0, 1])
@pytest.mark.parametrize("absorbing, expected", [(True, 6 * (3 / 8) / 26), (False, 0.0)])
def test_planted_absorption_has_the_known_answer(absorbing, expected, seed):
    split, fresh, sae = _planted(absorbing)
    evaluation = AbsorptionEval.from_activations([0], AbsorptionSettings(seed=seed), split["train"], split["test"], fresh)
    outcome = evaluation.score(sae, 0)
    assert outcome.reason is None
    assert outcome.metrics["absorption"] == pytest.approx(expected, abs=0.01)
    assert outcome.metrics["absorption_full"] == pytest.approx(expected, abs=0.01)
    assert outcome.metrics["absorption_letters"] == 26
    rows = {r.letter: r for r in outcome.letters}
    assert len(rows) == 26 and all(r.scored and r.probe_f1 == 1.0 and r.words == 8 for r in rows.values())
    for letter in "abcdef":
        assert rows[letter].mean_absorption == pytest.approx(3 / 8 if absorbing else 0.0)
    assert all(rows[letter].mean_absorption == 0.0 for letter in LETTERS[6:])
    assert all(r.split_features >= 1 for r in rows.values())
    assert outcome.resolved == {"sparse_probe_batch_size": 832 // 20} and outcome.warning is None


def test_saebenchs_sparse_probe_batch_misses_the_planted_answer_and_warns():
    """SAEBench's 4096 gives the 832 train words one k-sparse probe step per epoch: its main
    latents follow the random init and the planted answer comes out several times too high; the
    eval says why in a warning."""
    split, fresh, sae = _planted(True)
    settings = AbsorptionSettings(sparse_probe_batch_size=4096)
    outcome = AbsorptionEval.from_activations([0], settings, split["train"], split["test"], fresh).score(sae, 0)
    assert outcome.metrics["absorption"] > 3 * 6 * (3 / 8) / 26
    assert outcome.resolved == {"sparse_probe_batch_size": 4096}
    assert "1 optimiser step(s) per epoch on 832 train words" in outcome.warning


def test_sparse_probe_batch_choice():
    from harness.absorption.probes import sparse_probe_batch

    assert sparse_probe_batch(832) == (41, None)  # 832 / 41 = 20.3 -> 21 steps
    assert sparse_probe_batch(10_000_000) == (4096, None)  # SAEBench's batch where it gives >= 20 steps
    assert sparse_probe_batch(5) == (1, None)
    assert sparse_probe_batch(832, 256)[1] is not None and sparse_probe_batch(832, 41) == (41, None)


def test_planted_case_needs_saebenchs_letter_probe_settings():
    """The issue's old letter-probe settings (batch 4096 = one Adam step per epoch, weight decay
    1e-6) leave the probes untrained on the planted activations, so the eval would say n/a;
    SAEBench's (batch 64, weight decay 1e-4) decode every letter."""
    split, _, _ = _planted(True)
    words, acts = split["train"]
    test_words, test_acts = split["test"]
    y = torch.tensor([w.label for w in words])
    y_test = torch.tensor([w.label for w in test_words])
    good = {}
    for name, batch, decay in (("old", 4096, 1e-6), ("saebench", 64, 1e-4)):
        weight, bias = train_multi_probe(acts[0][None], y, batch_size=batch, epochs=50, lr=1e-2, end_lr=1e-5,
                                         weight_decay=decay, generator=torch.Generator().manual_seed(42))
        f1 = f1_per_letter(test_acts[0] @ weight[0].T + bias[0], y_test)
        good[name] = int((f1 > 0.6).sum())
    assert good["old"] < 20 <= good["saebench"] == 26


def test_na_is_decided_before_any_sae_work():
    """Letters drowned in noise: the probes fail, the reason comes back without the SAE ever
    being touched, and the per-letter F1s are still reported."""

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the SAE was used ({name}) for an n/a layer")

    split, fresh, _ = _planted(True, sigma=1.0)
    evaluation = AbsorptionEval.from_activations([0], AbsorptionSettings(), split["train"], split["test"], fresh)
    reason = evaluation.not_applicable(0)
    outcome = evaluation.score(Untouchable(), 0)
    assert reason and outcome.reason == reason and outcome.metrics == {}
    assert "of 26 letters have a ground-truth probe F1 > 0.6 at layer 0 (need 20" in reason
    assert [r.letter for r in outcome.letters] == list(LETTERS)
    assert all(not r.scored and r.words == 0 and r.mean_absorption is None for r in outcome.letters)
    assert sum(r.probe_f1 > 0.6 for r in outcome.letters) < 20


def test_a_layers_probe_does_not_depend_on_the_other_layers():
    split, fresh, _ = _planted(True)
    (words, acts), (test_words, test_acts) = split["train"], split["test"]
    noisy = {0: acts[0] + torch.randn_like(acts[0])}
    alone = AbsorptionEval.from_activations([0], AbsorptionSettings(), (words, acts), (test_words, test_acts), fresh)
    together = AbsorptionEval.from_activations(
        [0, 1], AbsorptionSettings(), (words, {0: acts[0], 1: noisy[0]}),
        (test_words, {0: test_acts[0], 1: test_acts[0]}), {0: fresh[0], 1: fresh[0]})
    assert torch.allclose(alone._probes[0].weight, together._probes[0].weight, atol=1e-6)
    assert [r.probe_f1 for r in alone.letters(0)] == [r.probe_f1 for r in together.letters(0)]


def test_unknown_layer_is_an_error():
    split, fresh, _ = _planted(True)
    evaluation = AbsorptionEval.from_activations([0], AbsorptionSettings(), split["train"], split["test"], fresh)
    with pytest.raises(ValueError, match="layer 3"):
        evaluation.not_applicable(3)


# ------------------------------------------------------------------ prompts and a real model


def test_prompt_text_is_saebenchs():
    """create_icl_prompt(..., prepend_separator_to_first_example=True) with first_letter_formatter."""
    prefix, prompt = first_letter_prompt(" cat", [" dog", "Apple"])
    assert prompt == "\n dog has the first letter: D\nApple has the first letter: A\n cat has the first letter:"
    assert prefix + " cat has the first letter:" == prompt
    assert first_letter(" cat") == " C" and first_letter("Zeta") == " Z"


def test_vocabulary_on_a_real_tokenizer():
    from transformers import AutoTokenizer

    from harness.builtin import model_dir

    tokenizer = AutoTokenizer.from_pretrained(model_dir("builtin:tiny-base"))
    vocab = alpha_vocabulary(tokenizer)
    assert len(vocab) > 100
    for word in vocab:
        assert tokenizer.decode([word.token_id]) == word.text
        assert word.text.strip().isalpha() and word.text.strip().isascii()
        assert LETTERS[word.label] == word.text.strip()[0].lower()


@pytest.fixture(scope="module")
def tiny_lm():
    from harness.models import load_model
    from suite.jobs import ModelRef

    return load_model(ModelRef("builtin:tiny-base", name="base"), torch.device("cpu"))


def test_shared_context_activations_equal_whole_prompts(tiny_lm):
    """words_per_context > 1 runs the shared prefix once (KV cache): each word's activation must
    equal a plain forward pass over its own prompt (read with output_hidden_states)."""
    import random

    from harness.absorption.prompts import alpha_vocabulary, build_groups, tokenize_groups, word_activations

    vocab = alpha_vocabulary(tiny_lm.tokenizer)[:40]
    groups = build_groups(vocab, [w.text for w in vocab], random.Random(0), 10, 4)
    tokenized, dropped = tokenize_groups(tiny_lm.tokenizer, groups)
    assert not dropped
    acts = word_activations(tiny_lm, [0, 1], tokenized, batch_size=64)  # (HF's last hidden state is normed)
    row = 0
    for group in tokenized:
        for word in group.words:
            text = tiny_lm.tokenizer.decode(group.prefix_ids[1:])  # the prefix text back (byte-level BPE)
            ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.tokenizer(text + word.text + " has the first letter:",
                                                                       add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                hidden = tiny_lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            position = len(group.prefix_ids)  # BOS + prefix tokens, then the word
            assert ids[position] == word.token_id
            for layer in (0, 1):
                assert torch.allclose(acts[layer][row], hidden[layer + 1][0, position], atol=1e-4)
            row += 1
    per_word = word_activations(tiny_lm, [0, 1], tokenize_groups(tiny_lm.tokenizer, build_groups(
        vocab, [w.text for w in vocab], random.Random(0), 10, 1))[0], batch_size=64)
    assert per_word[0].shape == acts[0].shape


def test_real_model_na_reports_letters_without_sae_work(tiny_lm):
    """The tiny test model cannot spell: n/a with SAEBench's defaults, decided before the SAE is used."""

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the SAE was used")

    evaluation = AbsorptionEval(tiny_lm, [1, 2], AbsorptionSettings())
    outcome = evaluation.score(Untouchable(), 1)
    assert outcome.metrics == {} and "letters have a ground-truth probe F1" in outcome.reason
    assert len(outcome.letters) == 26 and evaluation.letters(2)[0].letter == "a"
    assert evaluation.timings["word_activations"] > 0 and not evaluation.dropped


def test_real_model_absorption_numbers_when_thresholds_allow(tmp_path):
    """On the tiny Llama the default thresholds give n/a (tested end to end); lowered, the same
    code path yields numbers in range, stored like any metric."""
    import duckdb
    from conftest import TINY_SPEC, write_spec

    from suite.cli import main

    db = tmp_path / "abs.duckdb"
    text = TINY_SPEC.format(db=db).replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [1]") + "\n[absorption]\nf1_threshold = 0.0\nmin_letters = 1\nmax_words = 400\n"
    assert main(["run", str(write_spec(tmp_path, text))]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        values = dict(con.execute("select m.metric, m.value from metrics m join current_scores s using (score_id) "
                                  "where s.eval_name = 'absorption'").fetchall())
        gate = con.execute("select g.value, g.passed from gates g join current_scores s using (score_id) "
                           "where g.metric = 'absorption'").fetchone()
    assert 0 <= values["absorption"] <= 1 and 0 <= values["absorption_full"] <= 1
    assert 1 <= values["absorption_split_features"] <= 10 and 1 <= values["absorption_letters"] <= 26
    assert gate == (values["absorption"], values["absorption"] <= 0.35)


def test_spec_section_mirrors_the_settings():
    from dataclasses import fields

    from suite.spec import AbsorptionSection

    section = AbsorptionSection()
    for f in fields(AbsorptionSettings):
        assert getattr(section, f.name) == f.default, f.name
    assert set(AbsorptionSection.model_fields) == {f.name for f in fields(AbsorptionSettings)} | {"enabled"}
    with pytest.raises(Exception):
        AbsorptionSection(probe_batch_sise=64)
    with pytest.raises(Exception):
        AbsorptionSection(train_fraction=1.0)
