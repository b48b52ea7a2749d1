"""SAE checkpoints written by sae-bench, and the layout of earlier versions.

Current layout: a SAELens directory (`cfg.json` + `sae_weights.safetensors`, harness/formats/saelens.py)
with `metadata.sae_lens_version` 6.0, `metadata.hook_name` and `metadata.model_name`, so
`sae_lens.SAE.load_from_disk` loads it as it is; `metadata.sae_bench` adds our identity (SAE id and
key, the settings that rebuild the exact architecture). Checkpoints of sae-bench 0.1 with schema 3
lack the SAELens version (SAELens then drops their hook name) but read here the same way.
Schema-2 layout (sae-bench 0.1): `config.json` + `sae.safetensors` with `W_enc [latents, d]`;
still read, so migrated results files keep their SAEs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from harness.formats import saelens
from harness.formats.common import FormatError, SaeInfo, load_into, read_json
from harness.saes import SparseAutoencoder, build_sae
from harness.tempdirs import make_temp_dir
from suite.jobs import Job, SaeSettings

WEIGHTS, CONFIG = saelens.WEIGHTS, saelens.CONFIG
TEMP_PREFIX = ".ckpt-"  # a checkpoint being written; a killed run's are removed by the next (harness.tempdirs)
LEGACY_WEIGHTS, LEGACY_CONFIG = "sae.safetensors", "config.json"


class CheckpointError(RuntimeError):
    pass


def training_metadata(ctx_len: int, dataset_path: str) -> dict[str, Any]:
    """What SAELens 6 records of the training stream and SAEBench's drivers read back
    (`ActivationsStore.from_sae` refuses an SAE without `prepend_bos` and `context_size`): our
    windows of `ctx_len` tokens start with BOS (harness.tokens.iter_windows)."""
    return {"context_size": ctx_len, "dataset_path": dataset_path, "prepend_bos": True}


def metadata(job: Job, hook_name: str, settings: SaeSettings) -> dict[str, Any]:
    """SAELens metadata of a trained SAE, with our identity under `sae_bench`."""
    train = job.sae.train
    return {
        "model_name": job.sae.model.id, "hook_name": hook_name, "hf_hook_name": hook_name,
        **(training_metadata(train.ctx_len, train.dataset.path) if train else {}),
        "sae_bench": {"sae_id": job.sae_id, "sae_key": job.key, "settings": asdict(settings),
                      "identity": job.sae.identity()},
    }


def write_atomically(directory: Path, write) -> Path:
    """Run `write(tmp_dir)`, then move the result to `directory` (replaced if present)."""
    tmp = make_temp_dir(directory.parent, TEMP_PREFIX)
    try:
        write(tmp)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def save_sae(sae: SparseAutoencoder, job: Job, directory: Path, hook_name: str) -> Path:
    """Write atomically into `directory` (replaced if present); returns it."""
    return write_atomically(directory, lambda tmp: saelens.write(sae, tmp, metadata(job, hook_name, sae.settings)))


def describe_checkpoint(directory: Path) -> SaeInfo:
    """What a checkpoint of any sae-bench version holds, without loading its weights."""
    if (directory / CONFIG).is_file():
        config = read_json(directory / CONFIG)
        meta = config.get("metadata") or {}
        settings = (meta.get("sae_bench") or {}).get("settings")
        if not isinstance(settings, dict):
            raise FormatError(f"{directory} is a SAELens directory without sae-bench settings: import it with "
                              f'source = "saelens:{directory}"')
        return SaeInfo(settings.get("arch", "topk"), int(config["d_in"]), int(config["d_sae"]), settings.get("k"),
                       meta.get("hook_name"), str(config.get("dtype", "float32")), meta.get("model_name"))
    if (directory / LEGACY_CONFIG).is_file():
        config = read_json(directory / LEGACY_CONFIG)
        settings = config.get("sae") or {}
        return SaeInfo(settings.get("arch", "topk"), int(config["d_model"]), int(settings.get("latents", 0)),
                       settings.get("k"), None, "float32", None)
    raise FormatError(f"no SAE checkpoint at {directory} (expected {CONFIG} and {WEIGHTS})")


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """An SAE saved by any sae-bench version."""
    directory = Path(directory)
    if (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file():
        config = json.loads((directory / CONFIG).read_text())
        identity = (config.get("metadata") or {}).get("sae_bench", {})
        if "settings" not in identity:
            raise CheckpointError(f"{directory} is a SAELens directory without sae-bench settings: import it with "
                                  f"source = \"saelens:{directory}\"")
        sae = build_sae(config["d_in"], SaeSettings(**identity["settings"]))
        load_into(sae, load_file(directory / WEIGHTS))
    elif (directory / LEGACY_CONFIG).is_file() and (directory / LEGACY_WEIGHTS).is_file():
        config = json.loads((directory / LEGACY_CONFIG).read_text())
        sae = build_sae(config["d_model"], SaeSettings(**config["sae"]))
        tensors = load_file(directory / LEGACY_WEIGHTS)
        tensors["W_enc"] = tensors["W_enc"].T.contiguous()  # schema 2 kept the encoder as [latents, d]
        sae.load_state_dict(tensors)
    else:
        raise CheckpointError(f"no SAE checkpoint at {directory} (expected {CONFIG} and {WEIGHTS})")
    return sae.to(device)


def files_sha256(directory: str | Path) -> str:
    """sha256 over a checkpoint's files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
