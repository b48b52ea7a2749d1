"""Absorption: each rule on hand-computed numbers, planted SAEs with a known answer, and the
eval on a real model."""

from __future__ import annotations

import math

import pytest
import torch

from harness.absorption import (
    LETTERS,
    WordActivations,
    absorption_fraction,
    absorption_metrics,
    alpha_vocabulary,
    first_letter_prompt,
    ground_truth_probe,
    is_full_absorption,
    letter_absorption,
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
    assert not is_full_absorption(1.0, [0.0], top_cos=0.02, top_projection=0.9)  # top latent not aligned
    assert not is_full_absorption(-1.0, [0.0], top_cos=0.5, top_projection=0.9)  # probe not active
    assert not is_full_absorption(1.0, [0.0], top_cos=0.5, top_projection=0.39)  # carries < 40%


# ------------------------------------------------------------------ planted, one letter


def test_planted_letter_absorption():
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


# ------------------------------------------------------------------ planted, whole pipeline (steps 3-6)


def _planted(absorbing: bool):
    """26 letters on directions e0..e25 of a 32-d space. Words of 'a' with index % 4 == 0 and every
    word of letters b-f also carry e26. With `absorbing`, latent 26 (encoder e26, decoder
    (e0+e26)/sqrt2) fires on them and silences 'a''s main latent 0 on those 'a' words: since it
    also fires for b-f, k-sparse probing cannot take it for an 'a' feature (absorption, not split)."""
    torch.manual_seed(0)
    d, per_letter = 32, 40
    rows, labels = [], []
    for letter in range(26):
        for i in range(per_letter):
            x = torch.randn(d) * 0.05
            x[letter] += 3.0
            if (letter == 0 and i % 4 == 0) or 1 <= letter <= 5:
                x[26] += 1.0
            rows.append(x)
            labels.append(letter)
    x = torch.stack(rows)
    labels = torch.tensor(labels)
    train = torch.tensor([i % 5 != 0 for i in range(len(labels))])  # every 5th word is a test word
    train[torch.arange(len(labels)) % per_letter == 1] = False  # and index 1 of each letter
    words = WordActivations([f"w{i}" for i in range(len(labels))], labels, train, {0: x}, 0)
    sae = TopKSae(d, SaeSettings(k=2, latents=27))
    with torch.no_grad():
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        for j in range(26):
            sae.W_enc[j, j] = 1.0
            sae.W_dec[j, j] = 1.0
        if absorbing:
            sae.W_enc[26, 0] = -4.0  # e26 silences 'a''s main latent...
            sae.W_enc[26, 26] = 3.0  # ...and wakes the absorber
            sae.W_dec[26, 0] = sae.W_dec[26, 26] = 1 / math.sqrt(2)
        else:
            sae.W_dec[26, 31] = 1.0  # an unrelated latent that never fires
    return words, sae


@pytest.mark.parametrize("absorbing", [True, False])
def test_planted_pipeline_has_the_designed_absorption(absorbing):
    words, sae = _planted(absorbing)
    settings = AbsorptionSettings()
    truth = ground_truth_probe(words, 0, settings)
    assert len(truth.good_letters) == 26
    metrics, reason = absorption_metrics(sae, words, truth, 0, settings)
    assert reason is None
    test_a = [i for i in range(len(words.words)) if not words.train[i] and words.labels[i] == 0]
    absorbed_share = sum((i % 40) % 4 == 0 for i in test_a) / len(test_a)  # the 'a' test words carrying e26
    assert 0 < absorbed_share < 1
    expected = absorbed_share / 26 if absorbing else 0.0
    assert metrics["absorption"] == pytest.approx(expected)
    assert metrics["absorption_full"] == pytest.approx(expected)
    assert metrics["absorption_split_features"] == 1.0  # one main latent per letter, no splitting
    assert metrics["absorption_letters"] == 26


def test_too_few_good_letters_gives_a_reason_not_a_number():
    words, sae = _planted(True)
    settings = AbsorptionSettings(f1_threshold=0.999999, min_letters=26)
    truth = ground_truth_probe(words, 0, settings)
    truth.good_letters = truth.good_letters[:5]
    metrics, reason = absorption_metrics(sae, words, truth, 0, settings)
    assert metrics == {} and "only 5 of 26 letters" in reason and "need 26" in reason


# ------------------------------------------------------------------ the real tokenizer


def test_vocabulary_and_template_on_a_real_tokenizer():
    from transformers import AutoTokenizer

    from harness.builtin import model_dir

    tokenizer = AutoTokenizer.from_pretrained(model_dir("builtin:tiny-base"))
    vocab = alpha_vocabulary(tokenizer)
    assert len(vocab) > 100
    for token_id, text in vocab:
        assert tokenizer.decode([token_id]) == text and text.strip().isalpha() and text.strip().isascii()
    prefix, prompt = first_letter_prompt(" cat", [" dog", "Apple"])
    assert prompt == " dog has the first letter: D\nApple has the first letter: A\n cat has the first letter:"
    assert prefix + " cat" + " has the first letter:" == prompt
    assert all(letter in LETTERS for letter in "az")


def test_real_model_absorption_numbers_when_thresholds_allow(tmp_path):
    """On the tiny Llama the default thresholds give n/a (tested end to end); lowered, the same
    code path yields numbers in range, stored like any metric."""
    from conftest import TINY_SPEC, write_spec
    from suite.cli import main
    import duckdb

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
