"""Write tests/data/formats/: SAE directories written by the real SAELens and sparsify packages
from known weights, each with what that package computes on a fixed input (`reference.safetensors`:
x, latents, reconstruction), so tests check our importers against the packages themselves.

Run it in throwaway environments that have the packages (never sae-bench's own venv); each writes
what its packages can and checks that the known weights it regenerates match those already written:

    python3 -m venv /tmp/venv-peers && /tmp/venv-peers/bin/pip install torch==2.13.0 sae-lens eai-sparsify
    /tmp/venv-peers/bin/python scripts/make_format_fixtures.py tests/data/formats
    python3 -m venv /tmp/venv-sl5 && /tmp/venv-sl5/bin/pip install torch==2.13.0 sae-lens==5.11.0 "pyarrow<16"
    /tmp/venv-sl5/bin/python scripts/make_format_fixtures.py tests/data/formats

Fixtures: `saelens-topk/` and `sparsify-run/layers.1/` hold the same TopK weights (64 -> 64
latents, k 16, layer 1 of builtin:tiny-base; `known.safetensors` has them in SAELens orientation),
for the metrics test. Smaller ones (16 -> 32) cover options our importer must fold or map:
`saelens-topk-folded` (apply_b_dec_to_input false, rescale_acts_by_decoder_norm, decoder rows not
unit norm), `saelens-standard`, `saelens-jumprelu`, `saelens-batchtopk-training` (a training
checkpoint: architecture batchtopk, scalar topk_threshold), `saelens-matryoshka-training` (the same
for matryoshka_batchtopk), `saelens-gated` (b_gate, b_mag, r_mag; apply_b_dec_to_input false) and
`saelens5-topk` (SAELens 5 layout, hook blocks.2.hook_resid_pre).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODEL, HOOK = "builtin:tiny-base", "model.layers.1"


def known(d_in: int, d_sae: int, seed: int, unit: bool = True) -> dict[str, torch.Tensor]:
    """Tied encoder/decoder with a small negative encoder bias: a plausible SAE, fully determined."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    if not unit:
        W_dec = W_dec * (0.5 + torch.rand(d_sae, 1, generator=g))
    return {"W_enc": (W_dec.T * 0.8).contiguous(), "b_enc": -0.1 * torch.rand(d_sae, generator=g),
            "W_dec": W_dec.contiguous(), "b_dec": 0.05 * torch.randn(d_in, generator=g)}


def inputs(d_in: int, seed: int) -> torch.Tensor:
    return 2.0 * torch.randn(32, d_in, generator=torch.Generator().manual_seed(seed + 1000))


def keep_known(out: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    path = out / name
    if path.exists():
        stored = load_file(path)
        assert stored.keys() == tensors.keys() and all(torch.equal(stored[k], tensors[k]) for k in stored), \
            f"{path}: regenerated weights differ (another torch version?)"
    else:
        save_file(tensors, path)


def reference(directory: Path, x: torch.Tensor, latents: torch.Tensor, reconstruction: torch.Tensor) -> None:
    save_file({"x": x.contiguous(), "latents": latents.detach().contiguous(),
               "reconstruction": reconstruction.detach().contiguous()}, directory / "reference.safetensors")


def saelens6(out: Path) -> None:
    from sae_lens import SAE
    from sae_lens.saes import (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, GatedSAE, GatedSAEConfig,
                               JumpReLUSAE, JumpReLUSAEConfig, MatryoshkaBatchTopKTrainingSAE,
                               MatryoshkaBatchTopKTrainingSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE,
                               TopKSAEConfig)
    from sae_lens.saes.sae import SAEMetadata

    def save(sae, name: str, tensors: dict, x: torch.Tensor) -> None:
        sae.load_state_dict(tensors)
        directory = out / name
        sae.save_model(directory)
        training = sae.cfg.architecture() in ("batchtopk", "matryoshka_batchtopk")
        loaded = None if training else SAE.load_from_disk(directory)
        if loaded is None:  # a training checkpoint: what SAELens infers with is its inference model
            with tempfile.TemporaryDirectory() as tmp:
                sae.save_inference_model(tmp)
                loaded = SAE.load_from_disk(tmp)
        with torch.no_grad():
            latents = loaded.encode(x)
            reference(directory, x, latents, loaded.decode(latents))

    meta = SAEMetadata(model_name=MODEL, hook_name=HOOK)
    weights = known(64, 64, seed=0)
    keep_known(out, "known.safetensors", weights)
    save(TopKSAE(TopKSAEConfig(d_in=64, d_sae=64, k=16, metadata=meta)), "saelens-topk", weights, inputs(64, 0))

    small_meta = SAEMetadata(model_name="gpt2", hook_name="blocks.3.hook_resid_post")
    w = known(16, 32, seed=1, unit=False)
    save(TopKSAE(TopKSAEConfig(d_in=16, d_sae=32, k=6, apply_b_dec_to_input=False, rescale_acts_by_decoder_norm=True,
                               metadata=small_meta)), "saelens-topk-folded", w, inputs(16, 1))
    save(StandardSAE(StandardSAEConfig(d_in=16, d_sae=32, metadata=small_meta)), "saelens-standard",
         known(16, 32, seed=2), inputs(16, 2))
    g = torch.Generator().manual_seed(3)
    jump = {**known(16, 32, seed=3), "threshold": 0.2 + 0.3 * torch.rand(32, generator=g)}
    save(JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=32, apply_b_dec_to_input=False, metadata=small_meta)),
         "saelens-jumprelu", jump, inputs(16, 3))
    batch = {**known(16, 32, seed=4), "topk_threshold": torch.tensor(0.25)}
    save(BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=16, d_sae=32, k=6, metadata=small_meta)),
         "saelens-batchtopk-training", batch, inputs(16, 4))
    matryoshka = {**known(16, 32, seed=6), "topk_threshold": torch.tensor(0.3)}
    save(MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=16, d_sae=32, k=6, matryoshka_widths=[8, 16, 32], metadata=small_meta)),
        "saelens-matryoshka-training", matryoshka, inputs(16, 6))
    g = torch.Generator().manual_seed(7)
    w = known(16, 32, seed=7)
    gated = {"W_enc": w["W_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
             "b_gate": 0.2 * torch.randn(32, generator=g), "b_mag": 0.2 * torch.randn(32, generator=g),
             "r_mag": 0.3 * torch.randn(32, generator=g)}
    save(GatedSAE(GatedSAEConfig(d_in=16, d_sae=32, apply_b_dec_to_input=False, metadata=small_meta)),
         "saelens-gated", gated, inputs(16, 7))


def saelens5(out: Path) -> None:
    from sae_lens import SAE, SAEConfig

    config = SAEConfig.from_dict({
        "architecture": "topk", "d_in": 16, "d_sae": 32, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 6},
        "apply_b_dec_to_input": True, "finetuning_scaling_factor": False, "context_size": 128, "model_name": "gpt2",
        "hook_name": "blocks.2.hook_resid_pre", "hook_layer": 2, "hook_head_index": None, "prepend_bos": True,
        "dataset_path": "Skylion007/openwebtext", "dataset_trust_remote_code": True, "normalize_activations": "none",
        "dtype": "float32", "device": "cpu", "sae_lens_training_version": md.version("sae-lens")})
    sae = SAE(config)
    sae.load_state_dict(known(16, 32, seed=5))
    directory = out / "saelens5-topk"
    sae.save_model(directory)
    loaded = SAE.load_from_disk(directory)
    x = inputs(16, 5)
    with torch.no_grad():
        latents = loaded.encode(x)
        reference(directory, x, latents, loaded.decode(latents))


def sparsify(out: Path) -> None:
    from sparsify import SparseCoder, SparseCoderConfig

    weights = known(64, 64, seed=0)
    keep_known(out, "known.safetensors", weights)
    coder = SparseCoder(64, SparseCoderConfig(num_latents=64, k=16))
    coder.load_state_dict({"encoder.weight": weights["W_enc"].T.contiguous(), "encoder.bias": weights["b_enc"],
                           "W_dec": weights["W_dec"], "b_dec": weights["b_dec"]})
    run = out / "sparsify-run"
    coder.save_to_disk(run / "layers.1")
    # what sparsify's trainer writes beside the hook folders (trainer.py `_checkpoint`; RunConfig has `model`)
    (run / "config.json").write_text(json.dumps({"model": MODEL, "sae": coder.cfg.to_dict(), "hookpoints": ["layers.1"]}))
    loaded = SparseCoder.load_many(str(run), local=True)["layers.1"]
    x = inputs(64, 0)
    with torch.no_grad():
        top_acts, top_indices, _ = loaded.encode(x)
        latents = torch.zeros(len(x), 64).scatter_(-1, top_indices, top_acts)
        reference(run / "layers.1", x, latents, loaded.decode(top_acts, top_indices))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/formats")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        version = md.version("sae-lens")
        (saelens6 if int(version.split(".")[0]) >= 6 else saelens5)(out)
        written.append(f"sae-lens {version}")
    except md.PackageNotFoundError:
        pass
    try:
        version = md.version("eai-sparsify")
        sparsify(out)
        written.append(f"eai-sparsify {version}")
    except md.PackageNotFoundError:
        pass
    print(f"wrote fixtures with {', '.join(written) or 'nothing (install sae-lens and/or eai-sparsify)'} "
          f"(torch {torch.__version__}) to {out}")


if __name__ == "__main__":
    main()
