"""Steps 1-2 of the eval: the vocabulary, the ICL prompts and the residual stream at the word.

Follows SAEBench sae_bench/evals/absorption/vocab.py (`get_alpha_tokens`), prompting.py
(`first_letter`, `create_icl_prompt`), probing.py (`create_dataset_probe_training`,
`gen_and_save_df_acts_probing`) and feature_absorption_calculator.py (`_build_prompts`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
ALL_ALPHA_LETTERS = set(LETTERS + LETTERS.upper())
# prompting.py VERBOSE_FIRST_LETTER_TEMPLATE / eval_config.py prompt_template
TEMPLATE = "{word} has the first letter:"
SEPARATOR = "\n"  # create_icl_prompt example_separator
MAX_CONTAMINATION_ATTEMPTS = 1000  # create_icl_prompt max_attempts


# ------------------------------------------------------------------ vocabulary


@dataclass(frozen=True)
class Word:
    token_id: int
    text: str  # the token as text, e.g. " cat" (leading space kept, as SAEBench)

    @property
    def label(self) -> int:
        return LETTERS.index(first_letter(self.text).strip().lower())


def _token_text(tokenizer, token: str) -> str:
    """vocab.py `convert_tokens_to_string`, with its fix for SentencePiece's leading '▁'."""
    converted = tokenizer.convert_tokens_to_string([token])
    if token and token[0] == "\u2581" and (not converted or converted[0] != " "):
        converted = " " + converted
    return converted


def alpha_vocabulary(tokenizer) -> list[Word]:
    """vocab.py `get_alpha_tokens`: tokens whose text, minus at most one leading space, is only
    ASCII letters; in token-id order (SAEBench iterates `tokenizer.vocab`, then shuffles)."""
    special = set(tokenizer.all_special_ids)
    words = []
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if token is None or token_id in special:
            continue
        text = _token_text(tokenizer, token)
        bare = text[1:] if text.startswith(" ") else text
        if bare and all(c in ALL_ALPHA_LETTERS for c in bare):
            words.append(Word(token_id, text))
    return words


# ------------------------------------------------------------------ prompts


def first_letter(word: str) -> str:
    """prompting.py `first_letter` with its defaults: " C" for " cat"."""
    chars = [c for c in word.strip() if c.isalpha()]
    return " " + chars[0].upper()


def icl_prefix(examples: list[str]) -> str:
    """The text before the word in `create_icl_prompt(..., prepend_separator_to_first_example=True)`:
    "\\n{ex} has the first letter: E\\n...\\n"; the prompt is prefix + TEMPLATE.format(word)."""
    lines = [TEMPLATE.format(word=ex) + first_letter(ex) for ex in examples]
    return SEPARATOR + SEPARATOR.join(lines) + SEPARATOR


def first_letter_prompt(word: str, examples: list[str]) -> tuple[str, str]:
    """(text before the word, full prompt) as `create_icl_prompt` builds it."""
    prefix = icl_prefix(examples)
    return prefix, prefix + TEMPLATE.format(word=word)


def sample_examples(rng: random.Random, pool: list[str], count: int, exclude: set[str]) -> list[str]:
    """`create_icl_prompt` with check_contamination: resample until no excluded word is among
    the examples (SAEBench excludes the prompt's own word)."""
    count = min(count, len(pool) - len(exclude & set(pool)))
    for _ in range(MAX_CONTAMINATION_ATTEMPTS):
        examples = rng.sample(pool, count)
        if not exclude.intersection(examples):
            return examples
    raise ValueError(f"no uncontaminated set of {count} ICL examples after {MAX_CONTAMINATION_ATTEMPTS} attempts")


@dataclass
class PromptGroup:
    """Words that share one sampled ICL prefix (one word each with SAEBench's sampling)."""

    prefix: str
    words: list[Word]


def build_groups(words: list[Word], pool: list[str], rng: random.Random, icl_examples: int,
                 words_per_context: int) -> list[PromptGroup]:
    """SAEBench samples fresh examples for every word (`words_per_context` = 1); more words per
    context reuse one sample for consecutive words, none of which is among its examples."""
    groups = []
    for start in range(0, len(words), words_per_context):
        chunk = words[start:start + words_per_context]
        examples = sample_examples(rng, pool, icl_examples, {w.text for w in chunk})
        groups.append(PromptGroup(icl_prefix(examples), chunk))
    return groups


# ------------------------------------------------------------------ residual stream at the word


class _Stop(Exception):
    pass


def _layer_outputs(lm, layers: list[int], **forward) -> dict[int, torch.Tensor]:
    """Decoder-layer outputs (the residual stream, SAEBench's hook_resid_post) of one forward
    that stops after the deepest requested layer."""
    captured: dict[int, torch.Tensor] = {}
    deepest = max(layers)

    def hook_for(index: int):
        def hook(_module, _inputs, output):
            captured[index] = (output[0] if isinstance(output, tuple) else output).detach()
            if index == deepest:
                raise _Stop

        return hook

    handles = [lm.layers[i].register_forward_hook(hook_for(i)) for i in layers]
    try:
        lm.model(**forward)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _cache_argument(model) -> str:
    """The forward argument that takes a KV cache: `cache` (transformers >= 5.2x) or `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class Tokenized:
    prefix_ids: list[int]  # BOS + prefix tokens
    words: list[Word]  # the words whose prompt tokenizes as prefix + [word] + template rest


def tokenize_groups(tokenizer, groups: list[PromptGroup]) -> tuple[list[Tokenized], list[Word]]:
    """Token ids per group, checking per word that its full prompt tokenizes as the prefix's
    tokens followed by the word's own token (not merged with its neighbours). SAEBench reads a
    fixed position (-6) without checking; a word that fails the check is left out, never misread."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prefixes = tokenizer([g.prefix for g in groups], add_special_tokens=False)["input_ids"]
    flat = [(gi, w) for gi, g in enumerate(groups) for w in g.words]
    full_texts = [groups[gi].prefix + TEMPLATE.format(word=w.text) for gi, w in flat]
    fulls = tokenizer(full_texts, add_special_tokens=False)["input_ids"] if flat else []
    kept: dict[int, list[Word]] = defaultdict(list)
    dropped = []
    for (gi, word), full in zip(flat, fulls):
        n = len(prefixes[gi])
        if full[:n] == prefixes[gi] and len(full) > n and full[n] == word.token_id:
            kept[gi].append(word)
        else:
            dropped.append(word)
    out = [Tokenized(bos + prefixes[gi], kept[gi]) for gi in range(len(groups)) if kept[gi]]
    return out, dropped


@torch.no_grad()
def word_activations(lm, layers: list[int], groups: list[Tokenized], batch_size: int,
                     progress=None, description: str = "") -> dict[int, torch.Tensor]:
    """Residual stream [n, d] per layer at each word token, in group order.

    A word's activation depends only on its prompt up to the word (causal attention), so the
    prompt is run up to the word. Groups of one word run as plain sequences, batched by length
    (no padding); larger groups run their shared prefix once and the words from its KV cache.
    """
    from transformers import DynamicCache

    device = lm.device
    cache_arg = _cache_argument(lm.model)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)  # (prefix length, words) -> groups
    for index, group in enumerate(groups):
        buckets[len(group.prefix_ids), len(group.words)].append(index)
    results: dict[int, dict[int, torch.Tensor]] = {layer: {} for layer in layers}
    total = sum(len(g.words) for g in groups)
    task = progress.add_task(description, total=total) if progress is not None and description else None
    for (length, per_group), indices in sorted(buckets.items()):
        step = max(1, batch_size // per_group)
        for start in range(0, len(indices), step):
            chunk = indices[start:start + step]
            prefix = torch.tensor([groups[i].prefix_ids for i in chunk], device=device)
            counts = [per_group] * len(chunk)
            word_ids = torch.tensor([w.token_id for i in chunk for w in groups[i].words], device=device)
            if per_group == 1:
                ids = torch.cat([prefix, word_ids[:, None]], dim=1)
                captured = _layer_outputs(lm, layers, input_ids=ids, use_cache=False)
            else:
                cache = DynamicCache(config=lm.model.config)
                _layer_outputs(lm, layers, input_ids=prefix, use_cache=True, **{cache_arg: cache})
                cache.batch_repeat_interleave(per_group)
                captured = _layer_outputs(lm, layers, input_ids=word_ids[:, None], use_cache=True,
                                          **{cache_arg: cache})
            rows = {layer: captured[layer][:, -1] for layer in layers}
            offset = 0
            for i, count in zip(chunk, counts):
                for layer in layers:
                    results[layer][i] = rows[layer][offset:offset + count].float().cpu()
                offset += count
            if task is not None:
                progress.update(task, advance=sum(counts))
    d = lm.model.get_input_embeddings().weight.shape[1]
    return {layer: torch.cat([results[layer][i] for i in range(len(groups))]) if groups
            else torch.empty(0, d) for layer in layers}
