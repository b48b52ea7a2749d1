"""SAE checkpoints written by sae-bench, and the layout of earlier versions.

Current layout: a SAELens directory (`cfg.json` + `sae_weights.safetensors`, parameters in
SAELens's orientation) whose config also carries sae-bench's identity under `metadata.sae_bench`,
so the SAE can be loaded by SAELens as it is and re-imported here with its key.
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

import torch
from safetensors.torch import load_file, save_file

from harness.saes import SparseAutoencoder, build_sae
from harness.tempdirs import make_temp_dir
from suite.jobs import Job, SaeSettings

WEIGHTS, CONFIG = "sae_weights.safetensors", "cfg.json"
TEMP_PREFIX = ".ckpt-"  # a checkpoint being written; a killed run's are removed by the next (harness.tempdirs)
LEGACY_WEIGHTS, LEGACY_CONFIG = "sae.safetensors", "config.json"


class CheckpointError(RuntimeError):
    pass


def save_sae(sae: SparseAutoencoder, job: Job, directory: Path, hook_name: str) -> Path:
    """Write atomically into `directory` (replaced if present); returns it."""
    tmp = make_temp_dir(directory.parent, TEMP_PREFIX)
    try:
        tensors = {name: p.detach().float().cpu().contiguous() for name, p in sae.state_dict().items()}
        save_file(tensors, tmp / WEIGHTS)
        config = {
            "architecture": sae.arch,
            "d_in": sae.d_in,
            "d_sae": sae.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            **sae.inference_config(),
            "metadata": {
                "hook_name": hook_name,
                "model_name": job.sae.model.id,
                "sae_bench": {"sae_id": job.sae_id, "sae_key": job.key, "settings": asdict(sae.settings),
                              "identity": job.sae.identity()},
            },
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """An SAE saved by any sae-bench version."""
    directory = Path(directory)
    if (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file():
        config = json.loads((directory / CONFIG).read_text())
        identity = config.get("metadata", {}).get("sae_bench", {})
        if "settings" not in identity:
            raise CheckpointError(f"{directory} is a SAELens directory without sae-bench settings: import it with "
                                  f"source = \"saelens:{directory}\"")
        sae = build_sae(config["d_in"], SaeSettings(**identity["settings"]))
        sae.load_state_dict(load_file(directory / WEIGHTS))
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
