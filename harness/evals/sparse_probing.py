"""SAEBench's sparse-probing eval (sae_bench/evals/sparse_probing: main.py, eval_config.py,
probe_training.py), for every SAE of a model at once.

1. Texts (`harness.probing_tasks`): per class up to train_size/2 training and test_size/2 test
   texts (`get_multi_label_train_test_data`); each class becomes a one-vs-rest task.
2. Activations (`get_all_llm_activations`, `create_meaned_model_activations`,
   `get_sae_meaned_activations`): each text truncated to `ctx_len` tokens, BOS first where the
   tokenizer has one; one model forward per batch of texts captures every hooked site of every
   SAE scored; the site's output is mean-pooled over the text's non-special tokens (BOS, EOS,
   PAD excluded), and each SAE encodes every non-special token, its latents mean-pooled the same
   way. So one forward per text serves every SAE of that model.
3. Probes (`harness.evals.sparse_probing_probes`): per class, on the model's pooled activations
   and on each SAE's pooled latents, a logistic probe on all dimensions (SAEBench's torch probe:
   `llm_test_accuracy`, `sae_test_accuracy`) and scikit-learn logistic regressions on the top k
   dimensions by class-mean difference (`llm_top_{k}_test_accuracy`, `sae_top_{k}_test_accuracy`).
   Metrics are means over classes (`run_eval_single_dataset`); one score per labelled dataset
   (SAEBench averages its datasets into one result; we keep them apart, one per [probing.NAME]).

Deliberate differences from SAEBench: texts are tokenized without padding to ctx_len and run in
right-padded batches with an attention mask (SAEBench pads to 128 and runs without a mask:
the same activations at real tokens under causal attention); BOS is prepended as everywhere in
sae-bench (SAEBench: whatever the tokenizer adds); SAE maths in fp32; negatives drawn once per
task and shared by all probes; seeded generators instead of the global torch RNG.
"""

from __future__ import annotations

import time

import torch
from rich.progress import Progress

from harness.activations import HookSite, capture
from harness.evals.sparse_probing_probes import BinaryTask, binary_task, mean_by_k, probe_scores
from harness.models import LoadedModel
from harness.probing_tasks import LabelledSplit, ProbingData, load_probing_data
from harness.saes import SparseAutoencoder
from harness.tokens import special_mask
from suite.jobs import ProbeRow, ProbingSettings, ScoreResult

ScoredSae = tuple[HookSite, SparseAutoencoder]


def _encode_texts(tokenizer, texts: list[str], ctx_len: int) -> list[list[int]]:
    bos = tokenizer.bos_token_id
    room = ctx_len - (1 if bos is not None else 0)
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=room)["input_ids"]
    return [([bos] if bos is not None else []) + ids for ids in encoded]


@torch.no_grad()
def pooled_activations(lm: LoadedModel, texts: list[str], saes: dict[str, ScoredSae], ctx_len: int,
                       batch_size: int, progress: Progress | None = None, label: str = "") -> tuple[dict, dict]:
    """Mean-pooled activations of every site ({site: [n, d]}) and SAE latents ({key: [n, d_sae]}),
    float32 on the CPU, one row per text (a text with no non-special token pools to zeros)."""
    sites = sorted({site for site, _ in saes.values()})
    encoded = _encode_texts(lm.tokenizer, texts, ctx_len)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    llm = {site: torch.zeros(len(texts), lm.d_model) for site in sites}
    latents = {key: torch.zeros(len(texts), sae.d_sae) for key, (_, sae) in saes.items()}
    task = progress.add_task(label or "sparse probing: activations", total=len(texts)) if progress else None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for j, i in enumerate(rows):
            ids[j, :len(encoded[i])] = torch.tensor(encoded[i])
            mask[j, :len(encoded[i])] = True
        ids, mask = ids.to(lm.device), mask.to(lm.device)
        keep = mask & ~special_mask(ids, lm.special_ids)
        acts, _ = capture(lm, ids, sites, attention_mask=mask.long())
        text_of = torch.arange(len(rows), device=lm.device)[:, None].expand_as(keep)[keep]
        counts = keep.sum(1).clamp_min(1).float()[:, None]
        index = torch.tensor(rows)
        for site in sites:
            x = acts[site][keep].float()  # the non-special tokens of the batch, once per site
            pooled = torch.zeros(len(rows), x.shape[1], device=x.device).index_add_(0, text_of, x)
            llm[site][index] = (pooled / counts).cpu()
            for key, (sae_site, sae) in saes.items():
                if sae_site != site:
                    continue
                param = sae.W_dec
                z = sae.encode(x.to(param.device, param.dtype)).float().to(x.device)
                summed = torch.zeros(len(rows), z.shape[1], device=x.device).index_add_(0, text_of, z)
                latents[key][index] = (summed / counts).cpu()
        if progress is not None:
            progress.update(task, advance=len(rows))
    return llm, latents


def _tasks(train: LabelledSplit, test: LabelledSplit, classes: list[str],
           seed: int) -> dict[str, tuple[BinaryTask, BinaryTask]]:
    out = {}
    for position, name in enumerate(classes):
        generator = torch.Generator().manual_seed(seed * 1000 + position)
        out[name] = (binary_task(train.labels, name, generator), binary_task(test.labels, name, generator))
    return out


def _metrics(prefix: str, scores) -> dict[str, float]:
    means = mean_by_k(scores)
    return {(f"{prefix}_test_accuracy" if k is None else f"{prefix}_top_{k}_test_accuracy"): v
            for k, v in means.items()}


@torch.no_grad()
def score_sparse_probing(lm: LoadedModel, saes: dict[str, ScoredSae], settings: ProbingSettings,
                         progress: Progress | None = None, data: ProbingData | None = None) -> dict[str, ScoreResult]:
    """`saes` maps a key to (site, SAE); returns key -> the eval's score of that SAE. `data`
    replaces the texts the settings name (planted tests)."""
    start = time.perf_counter()
    data = data or load_probing_data(settings)
    name = f"sparse probing: {settings.name} ({lm.ref.name or lm.ref.id})"
    train_llm, train_sae = pooled_activations(lm, data.train.texts, saes, settings.ctx_len, settings.batch_size,
                                              progress, f"{name}, train texts")
    test_llm, test_sae = pooled_activations(lm, data.test.texts, saes, settings.ctx_len, settings.batch_size,
                                            progress, f"{name}, test texts")
    tasks = _tasks(data.train, data.test, data.classes, settings.seed)
    options = dict(epochs=settings.probe_epochs, lr=settings.probe_lr, batch_size=settings.probe_batch_size,
                   patience=settings.probe_patience, seed=settings.seed, device=lm.device)
    with torch.enable_grad():
        llm_scores = {site: probe_scores(train_llm[site], test_llm[site], tasks, settings.k, **options)
                      for site in train_llm}
        results = {}
        for key, (site, _) in saes.items():
            sae_scores = probe_scores(train_sae[key], test_sae[key], tasks, settings.k, **options)
            rows = [ProbeRow(settings.name, s.class_name, inputs, s.k, s.accuracy,
                             len(tasks[s.class_name][0].rows), len(tasks[s.class_name][1].rows))
                    for inputs, scores in (("llm", llm_scores[site]), ("sae", sae_scores)) for s in scores]
            results[key] = ScoreResult(
                metrics={**_metrics("llm", llm_scores[site]), **_metrics("sae", sae_scores)}, probes=rows,
                device_name=lm.device_name, warning=data.warning)
    seconds = time.perf_counter() - start
    for result in results.values():
        result.seconds = seconds
    return results
