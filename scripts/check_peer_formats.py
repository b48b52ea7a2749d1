"""Check that SAE directories written by sae-bench load in the real SAELens and sparsify packages
and compute what sae-bench computes with them.

Run it with a Python that has `sae-lens` and/or `eai-sparsify` (a throwaway venv, not sae-bench's)
and the repository on the path:

    .venv/bin/sae-bench export DB OUT/lens --format saelens
    .venv/bin/sae-bench export DB OUT/coder --format sparsify
    PYTHONPATH=. /tmp/venv-peers/bin/python scripts/check_peer_formats.py --saelens OUT/lens \
        --saelens results/DB-checkpoints --sparsify OUT/coder

`--saelens DIR`: every sub-folder with a cfg.json (an export, or our checkpoint folder) goes through
`sae_lens.SAE.load_from_disk`; its metadata must keep model and hook names; encode/decode on random
inputs must match sae-bench's import of the same folder. `--sparsify DIR`: every run folder goes
through `SparseCoder.load_many(run, local=True)` (the keys must be exactly its hook folders) and each
hook folder through `SparseCoder.load_from_disk`, compared the same way. Exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
from pathlib import Path

import torch

from harness.formats import import_sae
from suite.jobs import ImportSource

TOLERANCE = 1e-5


def compare(label: str, ours, encode, decode, d_in: int) -> list[str]:
    x = 3 * torch.randn(64, d_in, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs_latents = encode(x)
        ours_latents = ours.encode(x)
        problems = []
        latent_gap = (theirs_latents - ours_latents).abs().max().item()
        recon_gap = (decode(theirs_latents) - ours.decode(ours_latents)).abs().max().item()
    if latent_gap > TOLERANCE or recon_gap > TOLERANCE:
        problems.append(f"{label}: outputs differ (latents {latent_gap:.2e}, reconstruction {recon_gap:.2e})")
    active = (ours_latents != 0).sum(-1).float().mean().item()
    print(f"  {label}: max |latents diff| {latent_gap:.1e}, max |reconstruction diff| {recon_gap:.1e}, "
          f"L0 {active:.1f}")
    return problems


def check_saelens(root: Path) -> list[str]:
    from sae_lens import SAE

    problems = []
    folders = sorted(p for p in root.iterdir() if (p / "cfg.json").is_file())
    if not folders:
        return [f"{root}: no SAELens folders"]
    for folder in folders:
        config = json.loads((folder / "cfg.json").read_text())
        theirs = SAE.load_from_disk(str(folder))
        meta = theirs.cfg.metadata
        for key in ("hook_name", "model_name"):
            if meta.get(key) != config["metadata"].get(key) or not meta.get(key):
                problems.append(f"{folder}: SAELens read metadata.{key} = {meta.get(key)!r}")
        ours, _ = import_sae(ImportSource("saelens", str(folder)))
        problems += compare(f"{folder.name} ({type(theirs).__name__}, hook {meta.get('hook_name')})", ours,
                            theirs.encode, theirs.decode, theirs.cfg.d_in)
    return problems


def check_sparsify(root: Path) -> list[str]:
    from sparsify import SparseCoder

    problems = []
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    if not runs:
        return [f"{root}: no sparsify run folders"]
    for run in runs:
        loaded = SparseCoder.load_many(str(run), local=True)
        folders = sorted(p.name for p in run.iterdir() if p.is_dir())
        if sorted(loaded) != folders:
            problems.append(f"{run}: load_many gave {sorted(loaded)}, folders are {folders}")
        for name in folders:
            coder = SparseCoder.load_from_disk(run / name)
            ours, _ = import_sae(ImportSource("sparsify", str(run / name)))

            def encode(x, coder=coder):
                top_acts, top_indices, _ = coder.encode(x)
                return torch.zeros(len(x), coder.num_latents).scatter_(-1, top_indices, top_acts)

            def decode(latents, coder=coder):
                top_acts, top_indices = latents.topk(coder.cfg.k, dim=-1)
                return coder.decode(top_acts, top_indices)

            problems += compare(f"{run.name}/{name} (load_many key {name in loaded})", ours, encode, decode, coder.d_in)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saelens", action="append", type=Path, default=[], metavar="DIR")
    parser.add_argument("--sparsify", action="append", type=Path, default=[], metavar="DIR")
    args = parser.parse_args()
    problems: list[str] = []
    for root in args.saelens:
        print(f"SAELens {md.version('sae-lens')} (torch {torch.__version__}): {root}")
        problems += check_saelens(root)
    for root in args.sparsify:
        print(f"sparsify {md.version('eai-sparsify')} (torch {torch.__version__}): {root}")
        problems += check_sparsify(root)
    for problem in problems:
        print(f"MISMATCH {problem}")
    print("all loaded and matched" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
