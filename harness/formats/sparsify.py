"""EleutherAI sparsify directories: one folder per hook point holding `cfg.json` + `sae.safetensors`
(sparsify/sparse_coder.py `save_to_disk` / `load_from_disk`), inside a run folder that
`SparseCoder.load_many` reads whole (every sub-folder is a hook point; files are ignored).

Tensors (`save_model` of the module): `encoder.weight [d_sae, d_in]`, `encoder.bias [d_sae]`,
`W_dec [d_sae, d_in]`, `b_dec [d_in]`, and `W_skip [d_in, d_in]` with a skip connection.
Inference: `z = TopK(relu(encoder(x - b_dec)))`, `x_hat = z @ W_dec + b_dec`
(sparse_coder.py `encode`/`decode`, fused_encoder.py), which is our TopK SAE with
`W_enc = encoder.weight.T`. Config (sparsify/config.py `SparseCoderConfig`): `activation`
(topk | groupmax), `expansion_factor`, `normalize_decoder`, `num_latents` (0: d_in x expansion),
`k`, `multi_topk`, `skip_connection`, `transcode`, plus `d_in`; older releases also carry `signed`
(no ReLU when true). We refuse transcoders, skip connections, groupmax and signed SAEs;
`normalize_decoder` and `multi_topk` only affect training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness.formats.common import FormatError, SaeInfo, check_tensors, header, read_json
from harness.formats.hooks import UnsupportedHook, site_of
from harness.saes import SparseAutoencoder

WEIGHTS, CONFIG = "sae.safetensors", "cfg.json"
RUN_CONFIG = "config.json"  # sparsify's trainer writes the run's TrainConfig here (trainer.py `_checkpoint`)


def is_sparsify_dir(directory: Path) -> bool:
    return (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()


def hook_folder(run: Path, layer: int, hook: str) -> Path:
    """The hook point folder of a run folder that reads (layer, hook)."""
    names = []
    for folder in sorted(p for p in run.iterdir() if p.is_dir() and is_sparsify_dir(p)):
        names.append(folder.name)
        try:
            if site_of(folder.name) == (layer, hook):
                return folder
        except UnsupportedHook:
            continue
    if not names:
        raise FormatError(f"{run}: neither a sparsify hook point folder ({CONFIG} + {WEIGHTS}) nor a run folder "
                          "holding such folders")
    raise FormatError(f"{run}: no hook point for layer {layer} {hook} (has {', '.join(names)})")


def read_info(directory: Path) -> SaeInfo:
    config = read_json(directory / CONFIG)
    try:
        d_in = int(config["d_in"])
        d_sae = int(config.get("num_latents") or 0) or d_in * int(config.get("expansion_factor", 32))
        k = int(config.get("k", 32))
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{directory / CONFIG}: d_in, num_latents/expansion_factor and k must be integers") from None
    for key, why in (("transcode", "is a transcoder (it predicts a module's output from its input)"),
                     ("skip_connection", "has a skip connection (W_skip)"),
                     ("signed", "is signed (latents without ReLU)")):
        if config.get(key):
            raise FormatError(f"this sparsify SAE {why}; sae-bench scores autoencoders with TopK latents ({key} = true)")
    if config.get("activation", "topk") != "topk":
        raise FormatError(f"this sparsify SAE uses activation {config.get('activation')!r}; sae-bench scores topk")
    if not 0 < k <= d_sae:
        raise FormatError(f"{directory / CONFIG}: k = {k} must be in 1..{d_sae}")
    expected = {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    dtype = check_tensors(directory / WEIGHTS, header(directory / WEIGHTS), expected)
    run = directory.parent / RUN_CONFIG
    model = None
    if run.is_file():
        try:
            model = json.loads(run.read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            model = None
    return SaeInfo("topk", d_in, d_sae, k, directory.name, dtype, model)


def load_tensors(directory: Path) -> dict[str, torch.Tensor]:
    raw = {name: t.to(torch.float32) for name, t in load_file(directory / WEIGHTS).items()}
    return {"W_enc": raw["encoder.weight"].T.contiguous(), "b_enc": raw["encoder.bias"].contiguous(),
            "W_dec": raw["W_dec"].contiguous(), "b_dec": raw["b_dec"].contiguous()}


def config_for(sae: SparseAutoencoder, extra: dict[str, Any]) -> dict[str, Any]:
    """`SparseCoderConfig.to_dict()` plus `d_in`, as `save_to_disk` writes it; `extra` keys (our
    identity) are dropped by sparsify's `from_dict(..., drop_extra_fields=True)`."""
    return {"activation": "topk", "expansion_factor": max(1, sae.d_sae // sae.d_in), "normalize_decoder": True,
            "num_latents": sae.d_sae, "k": int(sae.inference_config()["k"]), "multi_topk": False,
            "skip_connection": False, "transcode": False, "d_in": sae.d_in, **extra}


def write(sae: SparseAutoencoder, directory: Path, extra: dict[str, Any]) -> None:
    """Write a hook point folder (which must exist) as `SparseCoder.save_to_disk` does."""
    if sae.arch != "topk":
        raise FormatError(f"sparsify holds TopK SAEs only; this one is {sae.arch} (export it with --format saelens)")
    tensors = {"encoder.weight": sae.W_enc.detach().float().cpu().T.contiguous(),
               "encoder.bias": sae.b_enc.detach().float().cpu().contiguous(),
               "W_dec": sae.W_dec.detach().float().cpu().contiguous(),
               "b_dec": sae.b_dec.detach().float().cpu().contiguous()}
    save_file(tensors, directory / WEIGHTS)
    (directory / CONFIG).write_text(json.dumps(config_for(sae, extra), indent=2, default=str))
