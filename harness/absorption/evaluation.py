"""The eval object: word activations and ground-truth probes once per model, then any SAE.

The order of work follows SAEBench's main.py `run_eval`, except that the n/a decision (too few
letters with probe F1 > f1_threshold, SAEBench's `min_feats_for_eval` check) is taken right
after the ground-truth probes, before any SAE work, instead of after k-sparse probing.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field

import torch

from harness.absorption.probes import f1_per_letter, k_sparse_main_latents, sparse_probe_batch, train_multi_probe
from harness.absorption.prompts import (
    LETTERS,
    Word,
    alpha_vocabulary,
    build_groups,
    tokenize_groups,
    word_activations,
)
from harness.absorption.rules import letter_absorption
from suite.jobs import AbsorptionSettings

ENCODE_BATCH = 4096  # k_sparse_probing.py `_get_sae_acts` batch size
PROBE_CHUNK_ELEMENTS = 2**28  # at most this many activation values (1 GiB fp32) in one probe training


@dataclass
class LetterResult:
    letter: str  # 'a'..'z'
    probe_f1: float  # ground-truth probe F1 on its test words
    scored: bool  # included in the mean
    words: int  # words used for the absorption calculation for this letter (0 if not scored)
    mean_absorption: float | None  # mean absorption fraction over those words
    full_absorption: float | None  # full-absorption rate
    split_features: int | None  # number of main latents from k-sparse probing


@dataclass
class AbsorptionOutcome:
    metrics: dict[str, float]  # 'absorption', 'absorption_full', 'absorption_split_features', 'absorption_letters'
    reason: str | None  # why there is no number (None when metrics are present)
    letters: list[LetterResult]  # 26 rows whenever the probe was trained (also when n/a)
    resolved: dict[str, int] = field(default_factory=dict)  # settings chosen at run time
    warning: str | None = None  # a setting that undermines the eval (e.g. too few probe steps)


@dataclass
class _Split:
    words: list[Word]
    labels: torch.Tensor  # [n] letter index
    acts: dict[int, torch.Tensor]  # layer -> [n, d] float32, CPU


@dataclass
class _Probe:
    weight: torch.Tensor  # [26, d]
    bias: torch.Tensor  # [26]
    f1: torch.Tensor  # [26] on the test words
    test_scores: torch.Tensor  # [n_test, 26]


def _split(words: list[Word], acts: dict[int, torch.Tensor]) -> _Split:
    return _Split(words, torch.tensor([w.label for w in words], dtype=torch.long), acts)


class AbsorptionEval:
    """One per loaded model: collects word activations once for all its layers, trains one
    ground-truth probe per layer, scores any number of SAEs.

    Work is lazy: the first call of `not_applicable`, `letters` or `score` collects the probe
    words' activations (all layers in one pass) and trains every layer's probe; the first SAE
    scored at a layer that can be scored also collects the fresh prompts of the absorption step.
    `timings` holds the seconds each stage took.
    """

    def __init__(self, lm, layers: list[int], settings: AbsorptionSettings, progress=None):
        self.lm = lm
        self.layers = sorted(set(layers))
        self.settings = settings
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.vocabulary: list[Word] = []
        self.dropped: list[Word] = []
        self._prepared = False
        self._reason: str | None = None
        self._train: _Split | None = None
        self._test: _Split | None = None
        self._probes: dict[int, _Probe] = {}
        self._fresh: dict[int, torch.Tensor] | None = None  # layer -> [n_test, d], NaN rows where dropped

    @classmethod
    def from_activations(cls, layers: list[int], settings: AbsorptionSettings, train: tuple[list[Word], dict],
                         test: tuple[list[Word], dict], fresh: dict[int, torch.Tensor]) -> "AbsorptionEval":
        """An eval over given word activations instead of a model's prompts (planted tests,
        precomputed activations): `train`/`test` are (words, {layer: [n, d]}) for the probe
        splits, `fresh` {layer: [n_test, d]} the absorption step's activations of the test words."""
        evaluation = cls(None, layers, settings)
        evaluation._prepared = True
        evaluation._train, evaluation._test = _split(*train), _split(*test)
        evaluation.vocabulary = list(train[0]) + list(test[0])
        evaluation._fresh = {layer: fresh[layer].float() for layer in evaluation.layers}
        evaluation._train_probes()
        return evaluation

    # ------------------------------------------------------------------ per model

    def prepare(self) -> None:
        """Collect the probe words' activations and train the ground-truth probes (once)."""
        if self._prepared:
            return
        self._prepared = True
        s = self.settings
        started = time.perf_counter()
        rng = random.Random(s.seed)
        self.vocabulary = alpha_vocabulary(self.lm.tokenizer)
        words = self.vocabulary
        if s.max_words and len(words) > s.max_words:
            words = rng.sample(words, s.max_words)
        # probing.py create_dataset_probe_training: shuffle, first 80% train, the rest test; each
        # split's prompts draw their ICL examples from the same split's words
        shuffled = rng.sample(words, len(words))
        cut = int(len(shuffled) * s.train_fraction)
        splits = {}
        for name, part in (("train", shuffled[:cut]), ("test", shuffled[cut:])):
            groups = build_groups(part, [w.text for w in part], rng, s.icl_examples, s.words_per_context)
            tokenized, dropped = tokenize_groups(self.lm.tokenizer, groups)
            self.dropped += dropped
            acts = word_activations(self.lm, self.layers, tokenized, s.batch_size, self.progress,
                                    f"absorption: {name} prompts ({self._name()})")
            splits[name] = _split([w for g in tokenized for w in g.words], acts)
        self._train, self._test = splits["train"], splits["test"]
        self.timings["word_activations"] = time.perf_counter() - started
        if len(self._train.words) < 2 or len(self._test.words) < 1:
            self._reason = (f"only {len(self._train.words) + len(self._test.words)} single-token alphabetic "
                            f"words tokenize as the first-letter template expects ({len(self.dropped)} did "
                            f"not): too few to train letter probes")
            return
        self._train_probes()

    def _train_probes(self) -> None:
        s = self.settings
        if len(self._train.words) < 2 or len(self._test.words) < 1:
            self._reason = (f"only {len(self._train.words) + len(self._test.words)} words: too few to train "
                            f"letter probes")
            return
        started = time.perf_counter()
        device = self.lm.device if self.lm is not None else torch.device("cpu")
        n, d = self._train.acts[self.layers[0]].shape
        per_chunk = max(1, PROBE_CHUNK_ELEMENTS // max(1, n * d))  # layers trained side by side
        for start in range(0, len(self.layers), per_chunk):
            chunk = self.layers[start:start + per_chunk]
            x = torch.stack([self._train.acts[layer] for layer in chunk]).to(device)
            # every layer starts from the same nn.Linear-style init and sees the same batches, so a
            # layer's probe does not depend on which other layers are evaluated with it
            init_generator = torch.Generator().manual_seed(s.seed)
            bound = 1 / math.sqrt(d)
            init_weight = (torch.rand(len(LETTERS), d, generator=init_generator) * 2 - 1) * bound
            init_bias = (torch.rand(len(LETTERS), generator=init_generator) * 2 - 1) * bound
            init = (init_weight.expand(len(chunk), -1, -1), init_bias.expand(len(chunk), -1))
            # common.py train_and_save_probes -> probing.py train_linear_probe_for_task
            weight, bias = train_multi_probe(x, self._train.labels, batch_size=s.probe_batch_size,
                                             epochs=s.probe_epochs, lr=s.probe_lr, end_lr=s.probe_end_lr,
                                             weight_decay=s.probe_weight_decay,
                                             generator=torch.Generator().manual_seed(s.seed), init=init)
            del x
            for i, layer in enumerate(chunk):
                w, b = weight[i].cpu(), bias[i].cpu()
                scores = self._test.acts[layer] @ w.T + b
                # k_sparse_probing.py build_metrics_df: f1_probe = f1_score(y, score_probe > 0)
                self._probes[layer] = _Probe(w, b, f1_per_letter(scores, self._test.labels).float(), scores)
        self.timings["probes"] = time.perf_counter() - started

    def _name(self) -> str:
        ref = getattr(self.lm, "ref", None)
        return getattr(ref, "name", None) or "model"

    def _check_layer(self, layer: int) -> None:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not prepared for absorption (layers: {self.layers})")

    def good_letters(self, layer: int) -> list[int]:
        """Letters whose ground-truth probe F1 exceeds f1_threshold (main.py: f1_probe > min_GT_probe_f1)."""
        self._check_layer(layer)
        self.prepare()
        probe = self._probes.get(layer)
        if probe is None:
            return []
        return [i for i in range(len(LETTERS)) if float(probe.f1[i]) > self.settings.f1_threshold]

    def not_applicable(self, layer: int) -> str | None:
        """Why `layer` cannot be scored, or None. Cheap once the probes are trained."""
        self._check_layer(layer)
        self.prepare()
        if self._reason:
            return self._reason
        good = self.good_letters(layer)
        s = self.settings
        if len(good) < s.min_letters:  # main.py: (f1_probe > min_GT_probe_f1).sum() < min_feats_for_eval
            best = ", ".join(f"{LETTERS[i]} {float(self._probes[layer].f1[i]):.2f}"
                             for i in self._probes[layer].f1.argsort(descending=True)[:3].tolist())
            return (f"only {len(good)} of 26 letters have a ground-truth probe F1 > {s.f1_threshold:g} at layer "
                    f"{layer} (need {s.min_letters}; best {best}; {len(self._train.words)} train and "
                    f"{len(self._test.words)} test words): the model does not represent first letters "
                    f"linearly there. SAEBench recommends this eval for models of >= 2B parameters")
        return None

    def letters(self, layer: int) -> list[LetterResult]:
        """The 26 per-letter rows with probe F1 only (nothing scored); [] if no probe was trained."""
        self._check_layer(layer)
        self.prepare()
        probe = self._probes.get(layer)
        if probe is None:
            return []
        return [LetterResult(letter, float(probe.f1[i]), False, 0, None, None, None)
                for i, letter in enumerate(LETTERS)]

    def _fresh_activations(self) -> dict[int, torch.Tensor]:
        """feature_absorption.py: the absorption step builds its own prompts for the test words
        (`FeatureAbsorptionCalculator._build_prompts`, ICL examples from the whole alphabetic
        vocabulary) and reads new activations. Built once for every test word and layer."""
        if self._fresh is not None:
            return self._fresh
        started = time.perf_counter()
        s = self.settings
        rng = random.Random(f"{s.seed}/absorption-prompts")
        pool = [w.text for w in self.vocabulary]
        groups = build_groups(self._test.words, pool, rng, s.icl_examples, s.words_per_context)
        tokenized, _ = tokenize_groups(self.lm.tokenizer, groups)
        acts = word_activations(self.lm, self.layers, tokenized, s.batch_size, self.progress,
                                f"absorption: fresh prompts ({self._name()})")
        order = {w.token_id: i for i, w in enumerate(w for g in tokenized for w in g.words)}
        d = next(iter(acts.values())).shape[1] if acts else 0
        self._fresh = {}
        for layer in self.layers:
            full = torch.full((len(self._test.words), d), float("nan"))
            for row, word in enumerate(self._test.words):
                if word.token_id in order:
                    full[row] = acts[layer][order[word.token_id]]
            self._fresh[layer] = full
        self.timings["fresh_activations"] = time.perf_counter() - started
        return self._fresh

    # ------------------------------------------------------------------ per SAE

    @torch.no_grad()
    def _encode(self, sae, x: torch.Tensor) -> torch.Tensor:
        param = sae.W_dec
        parts = [sae.encode(batch.to(param.device, param.dtype)).float() for batch in x.split(ENCODE_BATCH)]
        return torch.cat(parts) if parts else torch.empty(0, param.shape[0], device=param.device)

    def score(self, sae, layer: int) -> AbsorptionOutcome:
        reason = self.not_applicable(layer)
        if reason:
            return AbsorptionOutcome({}, reason, self.letters(layer))
        started = time.perf_counter()
        s = self.settings
        probe = self._probes[layer]
        good = self.good_letters(layer)
        train_latents = self._encode(sae, self._train.acts[layer])
        test_latents = self._encode(sae, self._test.acts[layer])
        generator = torch.Generator().manual_seed(s.seed)
        batch, warning = sparse_probe_batch(len(self._train.words), s.sparse_probe_batch_size)
        mains = k_sparse_main_latents(
            train_latents, self._train.labels, test_latents, self._test.labels, good, max_k=s.max_k,
            f1_jump=s.f1_jump, l1=s.sparse_probe_l1, batch_size=batch,
            epochs=s.sparse_probe_epochs, lr=s.sparse_probe_lr, end_lr=s.sparse_probe_end_lr,
            weight_decay=s.sparse_probe_weight_decay, generator=generator)
        fresh = self._fresh_activations()[layer]
        decoder = sae.W_dec.detach().float().cpu()
        rows: list[LetterResult] = []
        for i, letter in enumerate(LETTERS):
            f1 = float(probe.f1[i])
            if i not in good or i not in mains:
                rows.append(LetterResult(letter, f1, False, 0, None, None, None))
                continue
            # feature_absorption.py get_stats_and_likely_false_negative_tokens: the letter's test
            # words that the ground-truth probe (with its bias) gets right
            positives = (self._test.labels == i) & (probe.test_scores[:, i] > 0)
            positives &= ~fresh.isnan().any(dim=1)
            acts = fresh[positives]
            if len(acts) == 0:
                rows.append(LetterResult(letter, f1, False, 0, None, None, None))
                continue
            latents = self._encode(sae, acts).cpu()
            result = letter_absorption(acts, latents, decoder, probe.weight[i], mains[i])
            rows.append(LetterResult(letter, f1, True, result.words, result.mean_fraction, result.full_rate,
                                     len(mains[i])))
        scored = [r for r in rows if r.scored]
        self.timings["last_score"] = time.perf_counter() - started
        resolved = {"sparse_probe_batch_size": batch}
        if not scored:
            return AbsorptionOutcome({}, f"no test word of a letter with probe F1 > {s.f1_threshold:g} is "
                                         f"decoded by the ground-truth probe at layer {layer}", rows, resolved,
                                     warning)
        # main.py run_eval: statistics.mean over letters with f1_probe > min_GT_probe_f1
        metrics = {
            "absorption": statistics.mean(r.mean_absorption for r in scored),
            "absorption_full": statistics.mean(r.full_absorption for r in scored),
            "absorption_split_features": statistics.mean(r.split_features for r in scored),
            "absorption_letters": float(len(scored)),
        }
        return AbsorptionOutcome({k: float(v) for k, v in metrics.items()}, None, rows, resolved, warning)
