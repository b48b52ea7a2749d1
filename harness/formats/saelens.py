"""SAELens directories: `cfg.json` + `sae_weights.safetensors` (sae_lens/constants.py).

Reading follows `SAE.load_from_disk` (sae_lens/saes/sae.py): a config whose
`metadata.sae_lens_version` (or top-level `sae_lens_version`) is below 6.0 is first rewritten as
`handle_pre_6_0_config` does (sae_lens/loading/pretrained_sae_loaders.py: `hook_point` ->
`hook_name`, `activation_fn_str` -> `activation_fn`, TopK from `activation_fn_kwargs.k`, metadata
from top-level keys). Tensors keep SAELens's names and orientation, which are ours
(harness/saes/base.py). What SAELens computes at inference is reproduced exactly, folding options
our SAEs do not have into the weights:
- `apply_b_dec_to_input = false`: b_enc += b_dec @ W_enc, since our encoder subtracts b_dec;
- `rescale_acts_by_decoder_norm` (TopK and BatchTopK): W_enc, b_enc scaled by the decoder-row
  norms and W_dec divided by them (sae_lens/saes/topk_sae.py `_fold_norm_topk`);
- JumpReLU `log_threshold` (older training checkpoints) -> threshold = exp(log_threshold)
  (jumprelu_sae.py `process_state_dict_for_loading`); a BatchTopK training checkpoint's scalar
  `topk_threshold` becomes a JumpReLU threshold, as SAELens saves BatchTopK SAEs for inference
  (batchtopk_sae.py `process_state_dict_for_saving_inference`);
- `gated` (b_gate, b_mag, r_mag) becomes the JumpReLU it equals (`gated_as_jumprelu`).
Anything that changes the computation and cannot be folded (hook_z reshaping, a head index,
run-time activation normalisation, a finetuning scaling factor, transcoder
architectures) is refused with its name.

Writing produces what `SAE.save_model` writes for an inference SAE of SAELens >= 6, with
`metadata.hook_name` as SAELens names hooks of Hugging Face models (`model.layers.16`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version
from safetensors.torch import load_file, save_file

from harness.formats.common import FormatError, SaeInfo, check_tensors, header, read_json, require_architecture
from harness.saes import SparseAutoencoder

WEIGHTS, CONFIG = "sae_weights.safetensors", "cfg.json"
# The config layout we write: SAELens 6's (`metadata` holds model and hook; without a version of 6
# or later SAELens 6 rebuilds metadata from top-level keys and loses hook_name).
LAYOUT_VERSION = "6.0.0"
# SAELens architecture -> ours. BatchTopK and Matryoshka BatchTopK infer as JumpReLU in SAELens.
ARCHS = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu", "batchtopk": "jumprelu",
         "matryoshka_batchtopk": "jumprelu", "gated": "jumprelu"}
# Ours -> SAELens's inference architecture.
SAELENS_ARCH = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu",
                "matryoshka_batchtopk": "jumprelu"}
# sae_lens/constants.py DTYPE_MAP keys
DTYPES = {"float32", "float64", "float16", "bfloat16", "torch.float32", "torch.float64", "torch.float16",
          "torch.bfloat16"}
# Architectures whose `rescale_acts_by_decoder_norm` scales pre-activations by decoder-row norms
# (topk_sae.py; BatchTopK and Matryoshka derive from TopKTrainingSAE).
_RESCALING = ("topk", "batchtopk", "matryoshka_batchtopk")
_PRE6_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index",
                 "activation_fn_str": "activation_fn"}
_METADATA_KEYS = ("model_name", "hook_name", "hf_hook_name", "hook_head_index", "model_class_name",
                  "sae_lens_version")


def is_saelens_dir(directory: Path) -> bool:
    return (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()


def _version(config: dict) -> Version | None:
    raw = config.get("sae_lens_version") or (config.get("metadata") or {}).get("sae_lens_version")
    try:
        return Version(str(raw)) if raw else None
    except InvalidVersion:
        return None


def normalized_config(config: dict) -> dict:
    """The config in SAELens 6's shape (`metadata` a dict), older layouts rewritten as SAELens does."""
    version = _version(config)
    if version is not None and version >= Version("6.0.0rc0"):
        return {**config, "metadata": dict(config.get("metadata") or {})}
    old = {_PRE6_RENAMES.get(key, key): value for key, value in config.items()}
    old.setdefault("architecture", "standard")
    old.setdefault("apply_b_dec_to_input", True)
    activation = old.get("activation_fn", "relu")
    k = (old.get("activation_fn_kwargs") or {}).get("k")
    if activation == "topk" and k is not None:
        old["architecture"], old["k"] = "topk", k
    elif activation not in ("relu", "topk") and old["architecture"] == "standard":
        raise FormatError(f"activation function {activation!r} of this SAELens SAE is not one sae-bench scores "
                          "(relu, topk)")
    if isinstance(old.get("normalize_activations"), bool):
        old["normalize_activations"] = "expected_average_only_in" if old["normalize_activations"] else "none"
    old["normalize_activations"] = old.get("normalize_activations") or "none"
    if "hook_z" in str(old.get("hook_name", "")):
        old.setdefault("reshape_activations", "hook_z")
    old["metadata"] = {key: old[key] for key in _METADATA_KEYS if key in old}
    return old


def read_info(directory: Path) -> tuple[SaeInfo, dict]:
    """The SAE's description and its normalised config; raises FormatError for what we cannot score."""
    config = normalized_config(read_json(directory / CONFIG))
    arch = config.get("architecture")
    if arch not in ARCHS:
        raise FormatError(f"SAELens architecture {arch!r} is not one sae-bench scores "
                          f"({', '.join(sorted(ARCHS))})")
    ours = ARCHS[arch]
    require_architecture(ours, arch, "SAELens")
    try:
        d_in, d_sae = int(config["d_in"]), int(config["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{directory / CONFIG}: d_in and d_sae must be integers") from None
    metadata = config["metadata"]
    refusals = {
        "reshape_activations": (config.get("reshape_activations", "none"), "none",
                                "reshapes attention heads (hook_z), which sae-bench does not read"),
        "normalize_activations": (config.get("normalize_activations", "none"),
                                  ("none", "expected_average_only_in"),
                                  "normalises activations at run time, which sae-bench does not do"),
        "hook_head_index": (metadata.get("hook_head_index"), None, "reads one attention head"),
        "finetuning_scaling_factor": (bool(config.get("finetuning_scaling_factor")), False,
                                      "has a finetuning scaling factor"),
    }
    for key, (value, allowed, why) in refusals.items():
        if value != allowed and not (isinstance(allowed, tuple) and value in allowed):
            raise FormatError(f"this SAELens SAE {why} ({key} = {value!r})")
    dtype = str(config.get("dtype", "float32"))
    if dtype not in DTYPES:
        raise FormatError(f"{directory / CONFIG}: dtype {dtype!r} is not one SAELens loads ({', '.join(sorted(DTYPES))})")
    k = None
    if ours == "topk":
        k = config.get("k")
        if not isinstance(k, int) or not 0 < k <= d_sae:
            raise FormatError(f"{directory / CONFIG}: a topk SAE needs an integer k in 1..d_sae ({d_sae}), got {k!r}")
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    optional: dict[str, tuple[int, ...]] = {}
    found = header(directory / WEIGHTS)
    if arch == "gated":
        del expected["b_enc"]
        expected.update({"b_gate": (d_sae,), "b_mag": (d_sae,), "r_mag": (d_sae,)})
    elif arch == "jumprelu":
        optional = {"threshold": (d_sae,), "log_threshold": (d_sae,)}
        if ("threshold" in found) == ("log_threshold" in found):
            raise FormatError(f"{directory / WEIGHTS}: a jumprelu SAE needs one of threshold, log_threshold")
    elif arch in ("batchtopk", "matryoshka_batchtopk"):
        shape = found.get("topk_threshold", ((), ""))[0]
        expected["topk_threshold"] = shape if shape in ((), (1,)) else ()
    if "scaling_factor" in found:  # kept for a while by SAELens, all ones unless fine-tuned (read_sae_components_from_disk)
        optional["scaling_factor"] = (d_sae,)
    weights_dtype = check_tensors(directory / WEIGHTS, found, expected, optional)
    hook = metadata.get("hf_hook_name") or metadata.get("hook_name")
    return SaeInfo(ours, d_in, d_sae, k, str(hook) if hook else None, weights_dtype, metadata.get("model_name")), config


def load_tensors(directory: Path, info: SaeInfo, config: dict) -> dict[str, torch.Tensor]:
    """Our SAE's tensors (fp32) computing what SAELens computes with this directory."""
    raw = {name: t.to(torch.float32) for name, t in load_file(directory / WEIGHTS).items()}
    scaling = raw.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise FormatError(f"{directory / WEIGHTS}: a scaling_factor other than ones (a fine-tuned SAELens SAE) "
                          "is not supported")
    W_enc, W_dec, b_dec = raw.pop("W_enc"), raw.pop("W_dec"), raw.pop("b_dec")
    if config.get("architecture") == "gated":
        W_enc, b_enc, raw["threshold"] = gated_as_jumprelu(W_enc, raw.pop("b_gate"), raw.pop("b_mag"),
                                                           raw.pop("r_mag"))
    else:
        b_enc = raw.pop("b_enc")
    if not config.get("apply_b_dec_to_input", True):
        b_enc = b_enc + b_dec @ W_enc
    if config.get("architecture") in _RESCALING and config.get("rescale_acts_by_decoder_norm"):
        norms = W_dec.norm(dim=-1)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if "log_threshold" in raw:
        tensors["threshold"] = torch.exp(raw.pop("log_threshold"))
    elif "topk_threshold" in raw:
        tensors["threshold"] = torch.full((info.d_sae,), float(raw.pop("topk_threshold").flatten()[0]))
    elif "threshold" in raw:
        tensors["threshold"] = raw.pop("threshold")
    return {name: t.contiguous() for name, t in tensors.items()}


def gated_as_jumprelu(W_enc: torch.Tensor, b_gate: torch.Tensor, b_mag: torch.Tensor,
                      r_mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAELens's gated encoder (gated_sae.py `GatedSAE.encode`:
    1[x W + b_gate > 0] * relu(x (W * e^r) + b_mag)) as a JumpReLU: with m = x (W * e^r) + b_mag,
    the gate x W + b_gate > 0 is m > b_mag - e^r * b_gate (e^r > 0), so W_enc = W * e^r,
    b_enc = b_mag, threshold = b_mag - e^r * b_gate, and z = relu(m) * 1[m > threshold]
    (Rajamanoharan et al. 2024 note this equivalence)."""
    scale = r_mag.exp()
    return W_enc * scale, b_mag, b_mag - scale * b_gate


def config_for(sae: SparseAutoencoder, metadata: dict[str, Any]) -> dict[str, Any]:
    """SAELens 6's inference config of our SAE (`SAEConfig.to_dict`)."""
    arch = SAELENS_ARCH.get(sae.arch)
    if arch is None:
        raise FormatError(f"sae-bench's {sae.arch!r} SAE has no SAELens architecture")
    extra = {key: value for key, value in sae.inference_config().items() if key != "architecture"}
    if arch == "topk":
        extra.setdefault("rescale_acts_by_decoder_norm", False)
    return {
        "architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none", **extra,
        "metadata": {"sae_lens_version": LAYOUT_VERSION, "sae_lens_training_version": None,
                     "model_class_name": "AutoModelForCausalLM", **metadata},
    }


def tensors_for(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """SAELens's tensors of our SAE: our state as it is, a scalar threshold (BatchTopK) spread over
    the latents as SAELens's JumpReLU holds it."""
    tensors = {name: t.detach().float().cpu().contiguous() for name, t in sae.state_dict().items()}
    if SAELENS_ARCH.get(sae.arch) == "jumprelu" and "threshold" in tensors and tensors["threshold"].numel() == 1:
        tensors["threshold"] = tensors["threshold"].reshape(()).expand(sae.d_sae).contiguous()
    return tensors


def write(sae: SparseAutoencoder, directory: Path, metadata: dict[str, Any]) -> None:
    """Write `directory` (which must exist) as SAELens's `save_model` does."""
    save_file(tensors_for(sae), directory / WEIGHTS)
    (directory / CONFIG).write_text(json.dumps(config_for(sae, metadata), indent=2, default=str))
