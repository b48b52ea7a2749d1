"""Benchmark: a random-initialised Llama-2-7B-shaped model in bf16 on a GPU, training TopK SAEs
(k=32) on 5 layers for a fixed token count: training tokens/s, training / forward-only on the
same windows (benchmarks/train_vs_forward.py), and peak GPU memory.

The model has Llama-2-7B's shape (d_model 4096, 32 layers, MLP 11008, 32 heads, vocab 32000)
with random weights: speed does not depend on what the weights learned, and nothing is
downloaded. Its forward runs in bf16; the SAEs' weights and maths are fp32 (activations are cast
on the way in). Token windows come from the built-in corpus through the demo tokenizer (its ids
fit the vocabulary). `--tiny` shrinks the model to seconds on a CPU (a smoke test of the script).

    python benchmarks/gpu_llama.py [--layers 4,10,16,22,28] [--latents 16384] [--tokens 262144]
        [--ctx-len 1024] [--batch-size 8] [--repeats 2] [--device cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.train_vs_forward import measure
from harness.models import LoadedModel, decoder_layers, load_model, pick_device
from suite.jobs import DatasetRef, ModelRef, SaeSettings, TrainSettings

LLAMA_2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
            num_key_value_heads=2, vocab_size=4096, max_position_embeddings=512, rms_norm_eps=1e-5)


def random_llama(shape: dict, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_model(ModelRef("builtin:demo-base"), torch.device("cpu")).tokenizer
    config = LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, torch_dtype=dtype)
    model.eval().requires_grad_(False)
    name = "random:llama-2-7b-shape" if shape is LLAMA_2_7B else "random:tiny-llama"
    return LoadedModel(ModelRef(name, dtype=str(dtype).removeprefix("torch.")), model, tokenizer,
                       decoder_layers(model), device, dtype, source=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="4,10,16,22,28")
    parser.add_argument("--latents", type=int, default=16_384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=262_144, help="tokens each SAE trains on")
    parser.add_argument("--ctx-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 6-layer d_model-64 model: the script on a CPU")
    args = parser.parse_args()
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    start = time.perf_counter()
    lm = random_llama(TINY if args.tiny else LLAMA_2_7B, device, dtype)
    built = time.perf_counter() - start
    train = TrainSettings(DatasetRef("builtin:pyref", "train"), tokens=args.tokens, ctx_len=args.ctx_len,
                          batch_size=args.batch_size, lr=1e-3)
    settings = SaeSettings(k=args.k, latents=args.latents, dead_tokens=10_000_000)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    report = measure(lm, train, [int(v) for v in args.layers.split(",")], settings, args.repeats)
    report["model_build_s"] = round(built, 1)
    report["parameters"] = sum(p.numel() for p in lm.model.parameters())
    if device.type == "cuda":
        report["peak_gpu_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        report["weights_gib"] = round(sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2 ** 30, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
