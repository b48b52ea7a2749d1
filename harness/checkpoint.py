"""SAE checkpoints: `sae.safetensors` (weights) and `config.json` (settings and provenance)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness.saes import SparseAutoencoder, build_sae
from suite.jobs import Job, SaeSettings


def save_sae(sae: SparseAutoencoder, job: Job, directory: Path) -> Path:
    """Write atomically into `directory` (replaced if present); returns it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=directory.parent))
    tensors = {name: p.detach().float().cpu().contiguous() for name, p in sae.named_parameters()}
    save_file(tensors, tmp / "sae.safetensors")
    config = {"d_model": sae.d_model, "sae": asdict(sae.settings), "layer": job.layer,
              "job_key": job.key, "job": job.identity()}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    sae = build_sae(config["d_model"], SaeSettings(**config["sae"]))
    sae.load_state_dict(load_file(directory / "sae.safetensors"))
    return sae.to(device)
