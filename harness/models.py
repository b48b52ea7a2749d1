"""Model loading: any AutoModelForCausalLM by hub id, local path, GGUF file or `builtin:` name, once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress

from harness import builtin, gguf
from harness.hub import ensure_reachable_or_offline, unreachable_hint
from suite.jobs import ModelRef


class ModelLoadError(RuntimeError):
    pass


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA > MPS > CPU for "auto"; an explicit device that is missing is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but torch sees no CUDA GPU")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' requested but MPS is not available")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]


def resolve_source(ref: ModelRef, progress: Progress | None = None) -> str:
    """A `from_pretrained` argument: built-in models are built (once) and given by path."""
    if builtin.is_builtin(ref.id):
        return str(builtin.model_dir(ref.id, progress))
    return ref.id


@dataclass(frozen=True)
class ModelShape:
    """What validation needs of a model, read from its config alone."""

    layers: int | None
    d_model: int | None
    positions: int | None  # max_position_embeddings: longer windows are refused


def model_shape(ref: ModelRef) -> ModelShape | None:
    """The model's shape from the config alone, or None where it cannot be read offline.

    Only local files are consulted (a path, or the HF cache): validating a spec never waits on
    the network. A model not cached yet is checked when the run loads it. An unknown
    `builtin:` name raises ValueError naming the built-in models. GGUF models: from the file's
    header (a missing built-in package gives None here; validation names the install command).
    """
    if gguf.is_gguf(ref):
        try:
            path = gguf.gguf_path(ref, offline_only=True)
            return ModelShape(*gguf.header_shape(gguf.read_header(path))) if path else None
        except gguf.GgufError:
            return None
    if builtin.is_builtin(ref.id):
        recipe = builtin.builtin_model(ref.id).recipe
        return ModelShape(recipe.layers, recipe.d_model, builtin.max_positions(recipe))
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(ref.id, revision=ref.revision, local_files_only=True,
                                            trust_remote_code=ref.trust_remote_code)
    except Exception:
        return None
    config = getattr(config, "text_config", config)
    return ModelShape(
        getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None),
        getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or getattr(config, "d_model", None),
        getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None))


def model_depth(ref: ModelRef) -> int | None:
    """Number of decoder layers from the config alone, or None where it cannot be read offline."""
    shape = model_shape(ref)
    return shape.layers if shape is not None else None


def model_width(ref: ModelRef) -> int | None:
    """d_model from the config alone (as `model_depth`), or None where it cannot be read offline."""
    shape = model_shape(ref)
    return shape.d_model if shape is not None else None


@dataclass
class LoadedModel:
    ref: ModelRef
    model: torch.nn.Module
    tokenizer: object
    layers: torch.nn.ModuleList
    device: torch.device
    dtype: torch.dtype
    source: str = ""  # what from_pretrained was given
    _sha: str | None = None

    @property
    def d_model(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def special_ids(self) -> torch.Tensor:
        """BOS, EOS and PAD: SAEBench's `ignore_tokens` (evals/core/main.py), excluded from SAE
        training and from the masked metrics. Other special tokens (e.g. chat markers) are text."""
        tok = self.tokenizer
        ids = sorted({i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if i is not None})
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    @property
    def loaded_dtype(self) -> str:
        """The dtype the weights are in once loaded (`float32`, `bfloat16`): what `auto` became."""
        first = next(iter(self.model.parameters()), None)
        return str(first.dtype if first is not None else self.dtype).removeprefix("torch.")

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type

    def weights_sha(self) -> str:
        """The model's hub commit when it came from the hub, else a sha256 of its weights (built-in
        and local models), computed once per load; for GGUF models the file's sha256 and its
        quantization type (set at load)."""
        if self._sha is None:
            commit = getattr(self.model.config, "_commit_hash", None)
            self._sha = f"commit:{commit}" if commit and not Path(self.source).exists() else \
                f"sha256:{weights_sha256(self.model)}"
        return self._sha


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The residual blocks: `model.layers` for Llama-likes, else the ModuleList of depth n_layers."""
    config = getattr(model.config, "text_config", model.config)
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    inner = getattr(model, "model", None)
    if inner is not None and isinstance(getattr(inner, "layers", None), torch.nn.ModuleList):
        return inner.layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    raise ModelLoadError(f"cannot find the decoder layers of {type(model).__name__}")


def load_model(ref: ModelRef, device: torch.device, progress: Progress | None = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dtype = pick_dtype(ref.dtype, device)
    sha, revision = None, ref.revision
    if gguf.is_gguf(ref):  # dequantized once into a plain folder, loaded from there
        try:
            folder, source_file = gguf.dequantized_dir(ref, dtype, progress)
        except gguf.GgufError as exc:
            raise ModelLoadError(str(exc)) from exc
        source, sha, revision = str(folder), source_file.provenance, None
    else:
        source = resolve_source(ref, progress)
    local = Path(source).exists()
    online = local or ensure_reachable_or_offline()  # no network: the cache or a fast failure, not a minute of retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=not online,
                                                  trust_remote_code=ref.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=dtype,
                                                     local_files_only=not online,
                                                     trust_remote_code=ref.trust_remote_code)
    except OSError as exc:
        if not online:
            raise ModelLoadError(f"cannot load model {ref.id!r}: {unreachable_hint('it')}") from exc
        hint = "" if local else (
            " (is the id spelled right, is the model gated — run `huggingface-cli login` — "
            "and is the hub reachable or the model in the local HF cache?)")
        raise ModelLoadError(f"cannot load model {ref.id!r}: {' '.join(str(exc).split())}{hint}") from exc
    model.to(device).eval()
    model.requires_grad_(False)
    if tokenizer.eos_token_id is None and tokenizer.bos_token_id is None:
        raise ModelLoadError(f"tokenizer of {ref.id!r} has neither BOS nor EOS: cannot pack documents")
    return LoadedModel(ref, model, tokenizer, decoder_layers(model), device, dtype, source, sha)


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict in name order (names, dtypes, shapes and bytes): equal for
    equal weights whatever the file layout they were loaded from."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
