"""Feature absorption: SAEBench's first-letter eval (Chanin et al. 2024, "A is for Absorption";
absorption fraction by Demian Till), reproduced from SAEBench's source
(sae_bench/evals/absorption/: main.py, eval_config.py, probing.py, k_sparse_probing.py,
feature_absorption.py, feature_absorption_calculator.py, prompting.py, vocab.py, common.py).

1. Vocabulary (`prompts.alpha_vocabulary`, vocab.py `get_alpha_tokens`): tokens whose text,
   minus at most one leading space, is only ASCII letters. Shuffled and split 80/20 into probe
   train/test words (probing.py `create_dataset_probe_training`).
2. Prompts (prompting.py `create_icl_prompt`): "\\n" + 10 ICL lines "{w} has the first letter: W"
   drawn from the word's own split (never the word itself) + "{word} has the first letter:"; the
   residual stream (decoder-layer output, SAEBench's hook_resid_post) is read at the word token.
3. Ground-truth probe per layer (`probes.train_multi_probe`; common.py `train_and_save_probes`,
   probing.py `train_linear_probe_for_task`): 26 one-vs-rest logistic probes, BCE with
   pos_weight = neg/pos, Adam lr 1e-2 decaying exponentially per epoch to 1e-5, weight decay
   1e-4, batch 64, 50 epochs. F1 per letter on the test words, score > 0.
   Fewer than `min_letters` letters with F1 > `f1_threshold`: n/a with the reason, decided here.
4. Main latents per letter (`probes.k_sparse_main_latents`; k_sparse_probing.py): an L1 probe on
   the SAE latents of the train words (batch 4096, 50 epochs, l1 0.01, weight decay 1e-6) ranks
   latents; for k = 1..10 a balanced logistic regression (sklearn's, solved exactly) on the top k;
   k grows while test F1 improves by > 0.03.
5. Absorption (`rules`; feature_absorption_calculator.py): for each test word of the letter that
   the ground-truth probe gets right, a fresh prompt (ICL examples from the whole vocabulary) is
   run and each word gets an absorption fraction and a full-absorption flag.
6. Aggregation (main.py `_aggregate_results_df`, `run_eval`): per letter the mean fraction and
   full-absorption rate over those words and the number of main latents; the metrics are the
   means over letters with probe F1 > f1_threshold.

Deliberate differences from SAEBench (each also noted where it happens):
- n/a is decided right after the ground-truth probes (before any SAE work), per layer; SAEBench
  checks after k-sparse probing and then stops evaluating all further SAEs (`break`).
- The word's position is verified per prompt (the prompt must tokenize as the prefix's tokens
  followed by the word's own token); a word failing that is left out and counted
  (`AbsorptionEval.dropped`; none on the built-in models). SAEBench reads position -6 unchecked. The prompt is run only up to the word token (causal
  attention: the template's tail cannot change the word's activation). BOS is prepended when
  the tokenizer has one (TransformerLens' prepend_bos).
- Random streams are seeded from `settings.seed` (SAEBench uses the unseeded global `random`
  for splits and ICL examples, and a random nn.Linear init).
- Probes of several layers train side by side from the same init on the same shuffled batches
  (each layer's gradients and Adam state are exactly those of training it alone), so a layer's
  probe does not depend on which other layers are evaluated.
- k-sparse logistic regressions are solved to convergence (damped Newton, float64) instead of
  sklearn lbfgs with tol 1e-4 / max_iter 500: the same objective, its exact minimiser.
- The L1 probe uses 26 outputs even if a letter has no train word (SAEBench's one_hot would
  shrink and its pos_weight becomes inf); such a letter counts as one positive.
- The fresh prompts of step 5 are built once per model for all test words and reused by every
  SAE of that model (SAEBench rebuilds them, with new random examples, per SAE).
- A probe projection of exactly 0 gives fraction 0 / no full absorption (SAEBench divides by 0).
- k-sparse probes are fitted only for the letters that are scored (SAEBench fits all 26 and
  discards the rest); one `batch_size` serves both LM passes (SAEBench: 64 for the probe data,
  10 in the absorption step), which changes nothing but rounding.
- Options that SAEBench does not have, off by default: `max_words` (subsample the vocabulary)
  and `words_per_context` > 1 (consecutive words share one ICL sample, so their shared prefix
  runs once from the KV cache; each word's activation is still exactly that of its own prompt).
- Only the four means are reported (no standard deviations); per-letter rows are returned.

- The k-sparse L1 probe's batch is chosen from the number of train words unless the spec sets
  it (`sparse_probe_batch_size = 0`, the default): SAEBench's 4096, lowered so that an epoch has at
  least 20 optimiser steps (`probes.sparse_probe_batch`). SAEBench's 4096 gives a vocabulary of a
  few thousand words one Adam step per epoch, 50 in all: too few to rank the latents (the ranking
  follows the probe's random init and Adam's sign-like steps) and the planted test's absorption
  comes out 0.27-0.35 for a true 0.0865 over seeds 42, 0, 1; chosen (41 for its 832 train
  words), it is exact. SAEBench 0.6.0's own `train_sparse_multi_probe` on the planted latents
  ranks the planted main latent first for 19, 17, 19 of 26 letters (seeds 42, 0, 1) with batch
  4096 and for all 26 with 41. The batch used is stored with the score (`scores.eval_settings` -> `resolved`), and a
  batch set in the spec that leaves fewer than 20 steps per epoch is used with a warning.
"""

from harness.absorption.evaluation import AbsorptionEval, AbsorptionOutcome, LetterResult
from harness.absorption.probes import f1_per_letter, fit_logistic_balanced, k_sparse_main_latents, train_multi_probe
from harness.absorption.prompts import (
    LETTERS,
    TEMPLATE,
    Word,
    alpha_vocabulary,
    first_letter,
    first_letter_prompt,
)
from harness.absorption.rules import LetterAbsorption, absorption_fraction, is_full_absorption, letter_absorption

__all__ = [
    "AbsorptionEval", "AbsorptionOutcome", "LetterResult", "LETTERS", "TEMPLATE", "Word", "alpha_vocabulary",
    "first_letter", "first_letter_prompt", "absorption_fraction", "is_full_absorption", "letter_absorption",
    "LetterAbsorption", "train_multi_probe", "f1_per_letter", "fit_logistic_balanced", "k_sparse_main_latents",
]
