"""Score an SAE exported by `sae-bench export --format saelens` with SAEBench 0.6's own core eval.

Peers venv only (sae-lens, sae-bench, transformer-lens), never sae-bench's venv or tests:

    PYTHONPATH=. /work/peers/bin/python scripts/saebench_core_on_export.py EXPORTED_DIR MODEL_DIR

EXPORTED_DIR is one exported SAE folder, MODEL_DIR the Hugging Face folder of its model (a
built-in one: ~/.cache/sae-bench/models/tiny-base-*). SAEBench's code runs unchanged:
`SAE.load_from_disk`, `general_utils.load_and_format_sae` (its custom-SAE path),
`ActivationsStore.from_sae` (which reads `prepend_bos`, `context_size`, `hook_name` from the
export's metadata) and `evals.core.main.run_evals`. Two things are set up around it, as SAEBench
needs: a TransformerLens `HookedTransformer` holding the model's weights (SAEBench evaluates
TransformerLens models; its logits are checked against the Hugging Face model first), and the
SAE's hook named as TransformerLens names it (`blocks.L.hook_resid_post` for the exported
`model.layers.L`). The dataset is the built-in corpus split given by --split, as a `datasets.Dataset`.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
from pathlib import Path

import torch


def hooked_llama(model_dir: Path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    c = hf.config
    rope = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", 10000.0))
    cfg = HookedTransformerConfig(
        d_model=c.hidden_size, d_head=c.head_dim, n_heads=c.num_attention_heads, n_layers=c.num_hidden_layers,
        d_mlp=c.intermediate_size, d_vocab=c.vocab_size, n_ctx=c.max_position_embeddings, act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=c.head_dim, rotary_base=rope,
        gated_mlp=True, final_rms=True, eps=c.rms_norm_eps, n_key_value_heads=c.num_key_value_heads,
        original_architecture="LlamaForCausalLM", tokenizer_prepends_bos=False, default_prepend_bos=True,
        dtype=torch.float32, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(convert_llama_weights(hf, cfg), strict=False)
    ids = torch.randint(2, c.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = tokenizer.bos_token_id
    with torch.no_grad():
        gap = (model(ids) - hf(ids).logits).abs().max().item()
    assert gap < 1e-3, f"TransformerLens logits differ from the Hugging Face model's by {gap}"
    print(f"HookedTransformer built from {model_dir.name}: max |logit diff| vs transformers {gap:.1e}")
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sae_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--batches", type=int, default=4, help="reconstruction and sparsity batches")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from datasets import Dataset
    from sae_bench.evals.core.eval_config import CoreEvalConfig
    from sae_bench.evals.core.main import run_evals
    from sae_bench.sae_bench_utils import general_utils
    from sae_lens import SAE, ActivationsStore

    from harness.builtin import corpus_texts
    from harness.formats.hooks import site_of

    model = hooked_llama(args.model_dir)
    sae = SAE.load_from_disk(str(args.sae_dir))
    meta = sae.cfg.metadata
    layer, hook = site_of(meta.hook_name)
    assert hook == "resid_post", hook
    print(f"SAE {args.sae_dir.name}: {sae.cfg.architecture()} d_sae {sae.cfg.d_sae}, metadata hook_name "
          f"{meta.hook_name}, prepend_bos {meta.prepend_bos}, context_size {meta.context_size}, "
          f"dataset_path {meta.dataset_path}, model_name {meta.model_name}")
    meta.hook_name = f"blocks.{layer}.hook_resid_post"  # the same activations, as TransformerLens names them
    _, sae, _ = general_utils.load_and_format_sae("sae-bench-export", sae, "cpu")
    context = int(meta.context_size)
    dataset = Dataset.from_dict({"text": corpus_texts(str(meta.dataset_path).removeprefix("builtin:"), args.split)})
    store = ActivationsStore.from_sae(model, sae, context_size=context, dataset=dataset)
    store.shuffle_input_dataset(seed=42)
    config = CoreEvalConfig(model_name=str(meta.model_name), batch_size_prompts=args.batch_size,
                            n_eval_reconstruction_batches=args.batches,
                            n_eval_sparsity_variance_batches=args.batches,
                            exclude_special_tokens_from_reconstruction=True, dataset="builtin", context_size=context,
                            compute_kl=True, compute_ce_loss=True, compute_l2_norms=True,
                            compute_sparsity_metrics=True, compute_variance_metrics=True,
                            compute_featurewise_density_statistics=False, llm_dtype="float32")
    tok = model.tokenizer
    metrics, _ = run_evals(sae, store, model, config,
                           ignore_tokens={tok.pad_token_id, tok.eos_token_id, tok.bos_token_id})
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("sae-bench", "sae-lens", "transformer-lens"))
    print(f"SAEBench core eval ({versions}):")
    print(json.dumps(metrics, indent=1, default=float))


if __name__ == "__main__":
    main()
