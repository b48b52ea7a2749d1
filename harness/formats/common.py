"""What every import format shares: a description read without loading weights, tensor checks,
and building one of our architectures (through the `harness.saes` registry) from named tensors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from harness.saes import ARCHITECTURES, SparseAutoencoder, build_sae
from suite.jobs import SaeSettings

# safetensors dtype codes of floating tensors, which we upcast to fp32 without loss
FLOAT_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


class FormatError(ValueError):
    """A file that is not what its format says, or asks for something we cannot score; the
    message is one line that names the problem and, where there is one, the fix."""


@dataclass(frozen=True)
class SaeInfo:
    """What an SAE directory says about itself, read from its config and the weights' header."""

    arch: str  # ours: topk | relu | jumprelu | batchtopk
    d_in: int
    d_sae: int
    k: int | None = None
    hook_name: str | None = None  # as the file names it (SAELens metadata, sparsify folder)
    dtype: str = "float32"  # of the stored weights
    model_name: str | None = None


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FormatError(f"{path.parent}: no {path.name}")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return value


def header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, safetensors dtype code) of every tensor, without reading the data."""
    if not path.is_file():
        raise FormatError(f"{path.parent}: no {path.name}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: (tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
                    for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise FormatError(f"{path}: not a readable safetensors file ({exc})") from None


def check_tensors(path: Path, found: dict[str, tuple[tuple[int, ...], str]],
                  expected: dict[str, tuple[int, ...]], optional: dict[str, tuple[int, ...]] | None = None) -> str:
    """Raise unless `found` holds exactly the expected tensors (plus optional ones) with those
    shapes, all floating; returns their common dtype name."""
    optional = optional or {}
    missing = [name for name in expected if name not in found]
    if missing:
        raise FormatError(f"{path}: missing tensor(s) {', '.join(missing)} (has {', '.join(found) or 'none'})")
    extra = [name for name in found if name not in expected and name not in optional]
    if extra:
        raise FormatError(f"{path}: unexpected tensor(s) {', '.join(extra)}: not the architecture its config names")
    dtypes = set()
    for name, (shape, code) in found.items():
        want = expected.get(name, optional.get(name))
        if want is not None and shape != want:
            raise FormatError(f"{path}: tensor {name} has shape {list(shape)}, expected {list(want)} from the config")
        if code not in FLOAT_DTYPES:
            raise FormatError(f"{path}: tensor {name} has dtype {code}; sae-bench reads float32, float16, bfloat16 "
                              "or float64 weights")
        dtypes.add(FLOAT_DTYPES[code])
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


def require_architecture(arch: str, their_name: str, tool: str) -> None:
    if arch not in ARCHITECTURES:
        raise FormatError(f"{tool} architecture {their_name!r} is scored with sae-bench's {arch!r} SAE, which this "
                          f"version does not have (it has {', '.join(ARCHITECTURES)})")


def build(info: SaeInfo, tensors: dict[str, torch.Tensor], device: torch.device | str) -> SparseAutoencoder:
    """One of our SAEs holding `tensors` (SAELens names and orientation), built by the registry."""
    require_architecture(info.arch, info.arch, "sae-bench")
    settings = SaeSettings(arch=info.arch, latents=info.d_sae, **({"k": info.k} if info.k is not None else {}))
    sae = build_sae(info.d_in, settings)
    load_into(sae, tensors)
    return sae.to(device)


def load_into(sae: SparseAutoencoder, tensors: dict[str, torch.Tensor]) -> None:
    """Copy `tensors` into the SAE's state in fp32; a per-latent tensor that is one value repeated
    (a BatchTopK threshold written for SAELens's JumpReLU) fills a scalar slot."""
    state = sae.state_dict()
    missing = [name for name in state if name not in tensors]
    extra = [name for name in tensors if name not in state]
    if missing or extra:
        raise FormatError(f"sae-bench's {sae.arch} SAE holds {', '.join(state)}; the file gives "
                          f"{', '.join(tensors)}")
    fitted = {}
    for name, value in tensors.items():
        value = value.detach().to(torch.float32)
        target = state[name]
        if value.shape != target.shape and target.numel() == 1 and value.numel() > 1:
            if not bool((value == value.flatten()[0]).all()):
                raise FormatError(f"{name}: sae-bench's {sae.arch} SAE keeps one value; the file has several")
            value = value.flatten()[:1].reshape(target.shape)
        if value.shape != target.shape:
            raise FormatError(f"{name}: shape {list(value.shape)} where sae-bench's {sae.arch} SAE has "
                              f"{list(target.shape)}")
        fitted[name] = value
    sae.load_state_dict(fitted)
