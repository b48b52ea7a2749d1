"""What a model group asks Ray for: a GPU when the run uses GPUs, CPUs (one by default), and host memory
estimated from the model's size, so the scheduler packs groups onto nodes that can hold them.

The size comes from the model's config without loading weights (built-in recipes, local
directories, or the local Hugging Face cache; never the network), as a transformer's parameter
count: embeddings (and an untied output head) plus per layer 4·d² for attention, 3·d·ffn for a
gated MLP (2·d·ffn without a gate) and two norms. That is exact for Llama-style models (biases
and position tables are left out) and an upper bound for grouped-query attention; a model whose config cannot be read offline gets UNKNOWN_MODEL_BYTES.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.jobs import Job, ModelRef

GIB = 1024**3
BASE_BYTES = 2 * GIB  # Python, torch, transformers and the tokenizer in a fresh worker
UNKNOWN_MODEL_BYTES = 16 * GIB  # a 7-8B model in bf16, for configs not readable offline
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Request:
    """Ray resources for one group task."""

    cpus: float
    gpus: float
    memory: int  # bytes of host memory (Ray's `memory` resource)
    model_params: int | None  # the estimate it rests on; None = the config could not be read

    def describe(self) -> str:
        gpu = f"{self.gpus:g} GPU, " if self.gpus else ""
        return f"{gpu}{self.cpus:g} CPU, {self.memory / GIB:.1f} GiB memory"


def param_count(config: object) -> int | None:
    """Parameters of a decoder-only transformer from its HF config (fields read as transformers
    names them for Llama, Mistral, Qwen, GPT-2/NeoX-style configs)."""
    config = getattr(config, "text_config", config)

    def first(*names: str) -> int | None:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    d, layers, vocab = first("hidden_size", "n_embd", "d_model"), first("num_hidden_layers", "n_layer"), \
        first("vocab_size")
    if not (d and layers and vocab):
        return None
    ffn = first("intermediate_size", "n_inner", "ffn_dim") or 4 * d
    gated = getattr(config, "hidden_act", getattr(config, "activation_function", "")) in ("silu", "swiglu", "geglu") \
        or getattr(config, "model_type", "") in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3")
    tied = bool(getattr(config, "tie_word_embeddings", True))
    per_layer = 4 * d * d + (3 if gated else 2) * d * ffn + 2 * d  # attention, MLP, two norms
    return vocab * d * (1 if tied else 2) + layers * per_layer + d  # embeddings (and head), final norm


def model_config(ref: ModelRef) -> object | None:
    """The model's HF config, read offline (a built-in model's from its recipe, unbuilt)."""
    from harness import builtin

    try:
        from transformers import AutoConfig, LlamaConfig

        if builtin.is_builtin(ref.id):
            r = builtin.builtin_model(ref.id).recipe
            return LlamaConfig(vocab_size=r.vocab, hidden_size=r.d_model, intermediate_size=r.ffn,
                               num_hidden_layers=r.layers, num_attention_heads=r.heads,
                               tie_word_embeddings=r.tie_embeddings)
        return AutoConfig.from_pretrained(ref.id, revision=ref.revision, local_files_only=True,
                                          trust_remote_code=ref.trust_remote_code)
    except Exception:
        return None


def group_request(jobs: list[Job], gpus: float, cpus: int = 1) -> Request:
    """Host memory: the model at its dtype (fp32 on CPU; bf16 unless the spec says otherwise on
    GPU); when the group trains on CPU, also each SAE's weights, gradients and two Adam moments
    in fp32 and one shuffle buffer per hooked site; plus BASE_BYTES."""
    model = jobs[0].model
    config = model_config(model)
    params = param_count(config) if config is not None else None
    dtype = model.dtype if model.dtype != "auto" else ("bfloat16" if gpus else "float32")
    memory = BASE_BYTES + (params * DTYPE_BYTES[dtype] if params else UNKNOWN_MODEL_BYTES)
    inner = getattr(config, "text_config", config)
    d_model = getattr(inner, "hidden_size", None) or getattr(inner, "n_embd", None) or 4096
    if not gpus:
        sites = set()
        for job in jobs:
            sae, train = job.sae.sae, job.sae.train
            if job.train and sae is not None and train is not None:
                memory += 4 * 4 * 2 * sae.latents * d_model  # W_enc, W_dec: weights, grads, Adam m and v
                sites.add((job.layer, job.sae.hook, train.buffer_batches * train.batch_tokens))
        memory += sum(4 * d_model * rows for *_, rows in sites)
    return Request(cpus=cpus, gpus=gpus, memory=-(-memory // 2**20) * 2**20, model_params=params)
