"""Feature absorption, SAEBench's first-letter eval (Chanin et al. 2024, "A is for Absorption";
absorption fraction by Demian Till), on the model instance the rest of the eval uses.

1. Vocabulary: tokens whose text, minus at most one leading space, is only [A-Za-z]; split 80/20.
2. Prompts: `icl_examples` lines "{w} has the first letter: W", then "{word} has the first letter:";
   the residual stream is read at the word's token, whose position is verified per prompt
   (a word the template does not tokenize as expected is left out and counted, never misread).
3. Ground truth: a 26-way one-vs-rest logistic probe (BCE, pos_weight = neg/pos, Adam, decaying lr,
   weight decay); F1 per letter on the test words.
4. Main latents: an L1-regularised probe on SAE latents ranks latents per letter; for k = 1..10 a
   logistic regression on the top k is fitted, and k grows while test F1 improves by > 0.03.
5. Per test word the ground-truth probe gets right: the rules of `absorption_fraction` and
   `is_full_absorption` below, exactly as SAEBench.
6. Per letter with probe F1 > f1_threshold, then the mean over letters.

Word activations and ground-truth probes are cached per (model, layer) for every SAE there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from harness.models import LoadedModel
from harness.saes import SparseAutoencoder
from suite.jobs import AbsorptionSettings

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEMPLATE = "{word} has the first letter:"
EPS = 1e-8
ABSORBER_COS_THRESHOLD = 0.1  # an absorber's decoder must align with the probe at least this much
FULL_ABSORPTION_COS_THRESHOLD = 0.025
PROJECTION_PROPORTION_THRESHOLD = 0.4
MAX_ABSORBERS = 3
TOP_FEATURES = 10


# ------------------------------------------------------------------ step 5: the rules


def absorption_fraction(probe_projection: float, main_projection: float, absorber_projections: list[float]) -> float:
    """Share of the probe projection carried by (at most 3) absorbing latents rather than main ones.

    `absorber_projections`: projections of non-main latents with cos >= 0.1 and positive projection.
    """
    top = sorted(absorber_projections, reverse=True)[:MAX_ABSORBERS]
    absorbed = sum(top)
    if probe_projection == 0:
        return 0.0
    if main_projection >= probe_projection or absorbed / probe_projection < PROJECTION_PROPORTION_THRESHOLD:
        return 0.0
    if main_projection <= 0:
        return 1.0
    unaccounted = min(absorbed, probe_projection - main_projection)
    return float(np.clip(unaccounted / (unaccounted + main_projection), 0.0, 1.0))


def is_full_absorption(probe_projection: float, main_activations: list[float], top_cos: float,
                       top_projection: float) -> bool:
    """All main latents silent, and one aligned latent carries >= 40% of the probe projection."""
    if not all(a < EPS for a in main_activations):
        return False
    if top_cos < FULL_ABSORPTION_COS_THRESHOLD or probe_projection < 0:
        return False
    if probe_projection == 0:
        return False
    return top_projection / probe_projection >= PROJECTION_PROPORTION_THRESHOLD


@dataclass
class LetterAbsorption:
    mean_fraction: float
    full_rate: float
    words: int


@torch.no_grad()
def letter_absorption(x: torch.Tensor, latents: torch.Tensor, decoder: torch.Tensor, probe: torch.Tensor,
                      main_ids: list[int]) -> LetterAbsorption:
    """Step 5 for one letter: x [n, d] word activations the probe gets right, latents [n, L]."""
    direction = probe / probe.norm()
    cos = torch.nn.functional.cosine_similarity(decoder, direction[None, :], dim=-1)  # [L]
    projections = latents * cos[None, :]  # each latent's contribution along the probe
    probe_projection = x @ direction
    is_main = torch.zeros(latents.shape[1], dtype=torch.bool)
    is_main[main_ids] = True
    fractions, full = [], 0
    for i in range(x.shape[0]):
        proj = projections[i]
        absorbers = proj[(~is_main) & (cos >= ABSORBER_COS_THRESHOLD) & (proj > 0)]
        p = float(probe_projection[i])
        fractions.append(absorption_fraction(p, float(proj[is_main].sum()), absorbers.tolist()))
        top = int(proj.topk(min(TOP_FEATURES, proj.numel())).indices[0])
        full += is_full_absorption(p, latents[i, main_ids].tolist(), float(cos[top]), float(proj[top]))
    n = x.shape[0]
    return LetterAbsorption(sum(fractions) / n if n else math.nan, full / n if n else math.nan, n)


# ------------------------------------------------------------------ steps 1-2: words and activations


def alpha_vocabulary(tokenizer) -> list[tuple[int, str]]:
    """(token id, token text) for tokens that are one optional leading space plus ASCII letters."""
    words = []
    special = set(tokenizer.all_special_ids)
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        bare = text[1:] if text.startswith(" ") else text
        if bare and bare.isascii() and bare.isalpha():
            words.append((token_id, text))
    return words


def first_letter_prompt(word: str, examples: list[str]) -> tuple[str, str]:
    """(text before the word, full prompt)."""
    lines = [TEMPLATE.format(word=w) + " " + w.strip()[0].upper() for w in examples]
    prefix = "\n".join(lines) + "\n"
    return prefix, prefix + TEMPLATE.format(word=word)


@dataclass
class WordActivations:
    words: list[str]
    labels: torch.Tensor  # [n] letter index
    train: torch.Tensor  # [n] bool, the 80% split
    acts: dict[int, torch.Tensor]  # layer -> [n, d] fp32 on CPU
    dropped: int  # words whose prompt did not tokenize as the template expects


def _word_position(tokenizer, prefix: str, prompt: str, word: str, token_id: int) -> tuple[list[int], int] | None:
    with_word = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
    before = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if with_word[-1] != token_id or len(with_word) != len(before) + 1 or full[:len(with_word)] != with_word:
        return None
    return full, len(with_word) - 1


@torch.no_grad()
def collect_word_activations(lm: LoadedModel, layers: list[int], settings: AbsorptionSettings,
                             progress=None) -> WordActivations:
    from harness.activations import capture

    rng = random.Random(settings.seed)
    vocab = alpha_vocabulary(lm.tokenizer)
    if settings.max_words and len(vocab) > settings.max_words:
        vocab = rng.sample(vocab, settings.max_words)
    texts = [text for _, text in vocab]
    bos = [lm.tokenizer.bos_token_id] if lm.tokenizer.bos_token_id is not None else []
    prompts, positions, kept = [], [], []
    for token_id, text in vocab:
        examples = rng.sample([t for t in texts if t != text], min(settings.icl_examples, len(texts) - 1))
        prefix, prompt = first_letter_prompt(text, examples)
        found = _word_position(lm.tokenizer, prefix, prompt, text, token_id)
        if found is None:
            continue
        ids, position = found
        prompts.append(bos + ids)
        positions.append(position + len(bos))
        kept.append(text)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else (lm.tokenizer.eos_token_id or 0)
    acts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    task = progress.add_task(f"absorption: first-letter prompts ({lm.ref.name})", total=len(prompts)) \
        if progress is not None else None
    for start in range(0, len(prompts), settings.batch_size):
        batch = prompts[start:start + settings.batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, tokens in enumerate(batch):  # right padding: causal attention leaves the word unaffected
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
        captured, _ = capture(lm, ids, layers, attention_mask=mask)
        at = torch.tensor(positions[start:start + len(batch)], device=lm.device)
        for layer in layers:
            acts[layer].append(captured[layer][torch.arange(len(batch), device=lm.device), at].float().cpu())
        if task is not None:
            progress.update(task, advance=len(batch))
    labels = torch.tensor([LETTERS.index(w.strip()[0].lower()) for w in kept], dtype=torch.long)
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(settings.seed))
    train = torch.zeros(len(kept), dtype=torch.bool)
    train[order[: int(0.8 * len(kept))]] = True
    stacked = {layer: torch.cat(parts) if parts else torch.empty(0, lm.d_model) for layer, parts in acts.items()}
    return WordActivations(kept, labels, train, stacked, len(vocab) - len(kept))


# ------------------------------------------------------------------ steps 3-4: probes


def train_multi_probe(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, l1: float = 0.0,
                      lr: float = 1e-2, end_lr: float = 1e-5, weight_decay: float = 1e-6,
                      batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest logistic probes [classes, d] with BCE, pos_weight = neg/pos, Adam with
    exponentially decaying lr, weight decay, and optional L1 on the weights."""
    torch.manual_seed(seed)
    classes = len(LETTERS)
    targets = torch.nn.functional.one_hot(y, classes).float()
    positives = targets.sum(0).clamp_min(1)
    pos_weight = (len(y) - positives) / positives
    weight = torch.zeros(classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(y) / batch_size)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=(end_lr / lr) ** (1 / max(steps, 1)))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(y), generator=generator).split(batch_size):
            logits = x[rows] @ weight.T + bias
            loss = loss_fn(logits, targets[rows])
            if l1:
                loss = loss + l1 * weight.abs().sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return weight.detach(), bias.detach()


def f1_scores(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F1 per letter of `scores [n, 26] > 0` against labels y [n]."""
    predicted = scores > 0
    actual = torch.nn.functional.one_hot(y, len(LETTERS)).bool()
    tp = (predicted & actual).sum(0).float()
    fp = (predicted & ~actual).sum(0).float()
    fn = (~predicted & actual).sum(0).float()
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


def fit_balanced_logistic(x: torch.Tensor, y: torch.Tensor, iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched binary logistic regressions, one per leading index: x [c, n, k], y [c, n] in {0, 1};
    L2 penalty 1/2|w|^2 plus balanced class weights (sklearn's LogisticRegression defaults)."""
    classes, n, k = x.shape
    positives = y.sum(1, keepdim=True).clamp(1, n - 1)
    sample_weight = torch.where(y > 0, n / (2 * positives), n / (2 * (n - positives)))
    weight = torch.zeros(classes, k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    x, y, sample_weight = x.double(), y.double(), sample_weight.double()
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = torch.einsum("cnk,ck->cn", x, weight) + bias[:, None]
        loss = (sample_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, reduction="none")).sum() + 0.5 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().float(), bias.detach().float()


@dataclass
class GroundTruth:
    """A layer's ground-truth probe and the letters it can decode."""

    weight: torch.Tensor  # [26, d]
    bias: torch.Tensor
    f1: torch.Tensor  # [26] on the test words
    good_letters: list[int]


def ground_truth_probe(words: WordActivations, layer: int, settings: AbsorptionSettings) -> GroundTruth:
    x, y = words.acts[layer], words.labels
    weight, bias = train_multi_probe(x[words.train], y[words.train], settings.probe_epochs, settings.seed)
    test = ~words.train
    f1 = f1_scores(x[test] @ weight.T + bias, y[test])
    good = [i for i in range(len(LETTERS)) if f1[i] > settings.f1_threshold]
    return GroundTruth(weight, bias, f1, good)


def main_latents(sae: SparseAutoencoder, words: WordActivations, layer: int, settings: AbsorptionSettings,
                 letters: list[int]) -> dict[int, list[int]]:
    """Step 4: per letter, the top-k latents of an L1 probe, k grown while test F1 jumps > f1_jump."""
    x, y = words.acts[layer].to(sae.W_dec.device), words.labels
    with torch.no_grad():
        latents = sae.encode(x).cpu()
    train, test = words.train, ~words.train
    l1_weight, _ = train_multi_probe(latents[train], y[train], settings.sparse_probe_epochs, settings.seed,
                                     l1=settings.sparse_probe_l1)
    chosen: dict[int, list[int]] = {}
    best = {letter: -100.0 for letter in letters}
    open_letters = list(letters)
    for k in range(1, settings.max_k + 1):
        if not open_letters:
            break
        ids = torch.stack([l1_weight[letter].topk(k).indices for letter in open_letters])  # [c, k]
        x_train = latents[train][:, ids].permute(1, 0, 2)  # [c, n, k]
        y_train = torch.stack([(y[train] == letter).float() for letter in open_letters])
        weight, bias = fit_balanced_logistic(x_train, y_train)
        scores = torch.einsum("cnk,ck->cn", latents[test][:, ids].permute(1, 0, 2), weight) + bias[:, None]
        still_open = []
        for row, letter in enumerate(open_letters):
            actual = y[test] == letter
            predicted = scores[row] > 0
            tp = float((predicted & actual).sum())
            denominator = 2 * tp + float((predicted & ~actual).sum()) + float((~predicted & actual).sum())
            f1 = 2 * tp / denominator if denominator else 0.0
            if f1 > best[letter] + settings.f1_jump:
                best[letter] = f1
                chosen[letter] = ids[row].tolist()
                still_open.append(letter)
        open_letters = still_open
    return chosen


# ------------------------------------------------------------------ per SAE


def absorption_metrics(sae: SparseAutoencoder, words: WordActivations, truth: GroundTruth, layer: int,
                       settings: AbsorptionSettings) -> tuple[dict[str, float], str | None]:
    """(metrics, None) or ({}, reason it cannot be scored)."""
    if len(truth.good_letters) < settings.min_letters:
        return {}, (f"only {len(truth.good_letters)} of 26 letters have a ground-truth probe F1 > "
                    f"{settings.f1_threshold:g} at layer {layer} (need {settings.min_letters}; "
                    f"{len(words.words)} single-token words). SAEBench advises this eval for models of >= 1B "
                    f"parameters and SAEs of >= 16k latents")
    mains = main_latents(sae, words, layer, settings, truth.good_letters)
    test = ~words.train
    x, y = words.acts[layer][test], words.labels[test]
    probe_scores = x @ truth.weight.T + truth.bias
    device = sae.W_dec.device
    with torch.no_grad():
        latents = sae.encode(x.to(device)).cpu()
    decoder = sae.W_dec.detach().cpu()
    per_letter = []
    for letter in truth.good_letters:
        right = (y == letter) & (probe_scores[:, letter] > 0)
        if not right.any() or letter not in mains:
            continue
        per_letter.append((letter, letter_absorption(x[right], latents[right], decoder, truth.weight[letter],
                                                     mains[letter]), len(mains[letter])))
    if not per_letter:
        return {}, f"no test word is decoded by the ground-truth probe at layer {layer}"
    return {
        "absorption": float(np.mean([r.mean_fraction for _, r, _ in per_letter])),
        "absorption_full": float(np.mean([r.full_rate for _, r, _ in per_letter])),
        "absorption_split_features": float(np.mean([n for *_, n in per_letter])),
        "absorption_letters": float(len(per_letter)),
    }, None


# ------------------------------------------------------------------ the engine's interface


@dataclass
class LetterResult:
    letter: str
    probe_f1: float
    scored: bool
    words: int
    mean_absorption: float | None
    full_absorption: float | None
    split_features: int | None


@dataclass
class AbsorptionOutcome:
    metrics: dict[str, float]
    reason: str | None
    letters: list[LetterResult]


class AbsorptionEval:
    """One per loaded model: word activations once for all its layers, one ground-truth probe per
    layer, any number of SAEs scored."""

    def __init__(self, lm: LoadedModel, layers: list[int], settings: AbsorptionSettings, progress=None):
        self.lm, self.layers, self.settings, self.progress = lm, layers, settings, progress
        self._words: WordActivations | None = None
        self._truth: dict[int, GroundTruth] = {}

    def _ground_truth(self, layer: int) -> GroundTruth | str:
        if self._words is None:
            self._words = collect_word_activations(self.lm, self.layers, self.settings, self.progress)
        if len(self._words.words) < 26 * 2:
            return (f"only {len(self._words.words)} single-token alphabetic words tokenize as the first-letter "
                    f"template expects ({self._words.dropped} did not): too few to train letter probes")
        if layer not in self._truth:
            self._truth[layer] = ground_truth_probe(self._words, layer, self.settings)
        return self._truth[layer]

    def not_applicable(self, layer: int) -> str | None:
        truth = self._ground_truth(layer)
        return truth if isinstance(truth, str) else None

    def score(self, sae: SparseAutoencoder, layer: int) -> AbsorptionOutcome:
        truth = self._ground_truth(layer)
        if isinstance(truth, str):
            return AbsorptionOutcome({}, truth, [])
        assert self._words is not None
        metrics, reason = absorption_metrics(sae, self._words, truth, layer, self.settings)
        letters = [LetterResult(letter, float(truth.f1[i]), i in truth.good_letters, 0, None, None, None)
                   for i, letter in enumerate(LETTERS)]
        return AbsorptionOutcome(metrics, reason, letters)
