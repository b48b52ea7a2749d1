"""An independent re-implementation of SAEBench's core eval, for checking sae-bench's numbers.

It follows sae_bench/evals/core/main.py line by line (`get_recons_loss`,
`get_downstream_reconstruction_metrics`, `get_sparsity_and_variance_metrics`,
`calculate_misc_metrics`) with `exclude_special_tokens_from_reconstruction=True` and
`ignore_tokens = {pad, eos, bos}`, on a Hugging Face model through its own forward hooks, with
its own token windows and its own TopK encoder written from the raw weights. It shares no code
with `harness.metrics`, `harness.evals` or `harness.activations`.
"""

from __future__ import annotations

import json

import torch


def windows(jsonl_path: str, tokenizer, ctx_len: int, batch_size: int, batches: int) -> list[torch.Tensor]:
    """BOS + documents joined with EOS, cut into ctx_len windows (sae-bench's documented stream)."""
    stream: list[int] = []
    out: list[torch.Tensor] = []
    rows: list[list[int]] = []
    with open(jsonl_path, encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"]
            if not text.strip():
                continue
            stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            while len(stream) >= ctx_len - 1:
                rows.append([tokenizer.bos_token_id] + stream[:ctx_len - 1])
                del stream[:ctx_len - 1]
                if len(rows) == batch_size:
                    out.append(torch.tensor(rows))
                    rows = []
                    if len(out) == batches:
                        return out
    if rows:
        out.append(torch.tensor(rows))
    return out


class RawTopK:
    """TopK SAE from SAELens-layout weights: topk(relu((x - b_dec) W_enc + b_enc)), decode z W_dec + b_dec."""

    def __init__(self, tensors: dict[str, torch.Tensor], k: int):
        self.w_enc, self.b_enc = tensors["W_enc"].double(), tensors["b_enc"].double()
        self.w_dec, self.b_dec = tensors["W_dec"].double(), tensors["b_dec"].double()
        self.k = k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((x.double() - self.b_dec) @ self.w_enc + self.b_enc)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.w_dec + self.b_dec


def _module(model, layer: int, hook: str):
    block = model.model.layers[layer]
    return {"resid_post": block, "mlp_out": block.mlp, "attn_out": block.self_attn}[hook]


def _run(model, tokens, layer, hook, replace=None):
    """Logits, and the hooked output of the clean run (or with `replace(original)` patched in)."""
    seen = {}

    def fn(_m, _i, output):
        hidden = output[0] if isinstance(output, tuple) else output
        seen["act"] = hidden
        if replace is None:
            return None
        new = replace(hidden)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = _module(model, layer, hook).register_forward_hook(fn)
    try:
        logits = model(input_ids=tokens).logits
    finally:
        handle.remove()
    return logits, seen["act"]


def _ce_per_token(logits, tokens):
    """TransformerLens's loss_per_token: [B, T-1]."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return -log_probs[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _kl(original_logits, new_logits):
    """SAEBench's kl(): softmax, then log, per position [B, T]."""
    p = torch.softmax(original_logits.double(), dim=-1)
    q = torch.softmax(new_logits.double(), dim=-1)
    return (p * (torch.log(p) - torch.log(q))).sum(-1)


@torch.no_grad()
def downstream(model, sae: RawTopK, batches, layer: int, hook: str, ignore: set[int]) -> dict[str, float]:
    values: dict[str, list[torch.Tensor]] = {k: [] for k in ("kl_div_with_sae", "kl_div_with_ablation",
                                                               "ce_loss_with_sae", "ce_loss_without_sae",
                                                               "ce_loss_with_ablation")}
    for tokens in batches:
        mask = torch.logical_not(torch.any(torch.stack([tokens == t for t in ignore]), dim=0))
        original_logits, _ = _run(model, tokens, layer, hook)

        def reconstruct(acts):
            recon = sae.decode(sae.encode(acts)).to(acts.dtype)
            return torch.where(mask[..., None], recon, acts)

        recons_logits, _ = _run(model, tokens, layer, hook, reconstruct)
        zero_logits, _ = _run(model, tokens, layer, hook, torch.zeros_like)
        per_metric = {
            "kl_div_with_sae": _kl(original_logits, recons_logits),
            "kl_div_with_ablation": _kl(original_logits, zero_logits),
            "ce_loss_with_sae": _ce_per_token(recons_logits, tokens),
            "ce_loss_without_sae": _ce_per_token(original_logits, tokens),
            "ce_loss_with_ablation": _ce_per_token(zero_logits, tokens),
        }
        for name, value in per_metric.items():
            m = mask if value.shape[1] == mask.shape[1] else mask[:, :-1]
            values[name].append(value[m])
    out = {name: torch.cat(v).mean().item() for name, v in values.items()}
    out["kl_div_score"] = (out["kl_div_with_ablation"] - out["kl_div_with_sae"]) / out["kl_div_with_ablation"]
    out["ce_loss_score"] = ((out["ce_loss_with_ablation"] - out["ce_loss_with_sae"])
                            / (out["ce_loss_with_ablation"] - out["ce_loss_without_sae"]))
    out["ce_positions"] = sum(len(v) for v in values["ce_loss_with_sae"])
    return out


@torch.no_grad()
def sparsity_and_variance(model, sae: RawTopK, batches, layer: int, hook: str, ignore: set[int]) -> dict[str, float]:
    lists: dict[str, list[torch.Tensor]] = {k: [] for k in ("l0", "l1", "explained_variance_legacy", "mse", "cossim",
                                                              "l2_ratio", "relative_reconstruction_bias")}
    mean_sum_of_squares, mean_act_per_dimension, mean_sum_of_resid_squared = [], [], []
    inputs, outputs = [], []  # for the textbook (centred) explained variance, over all tokens
    total_feature_acts = torch.zeros(sae.w_enc.shape[1], dtype=torch.float64)
    total_tokens = 0
    for tokens in batches:
        mask = torch.logical_not(torch.any(torch.stack([tokens == t for t in ignore]), dim=0))
        flattened_mask = mask.flatten()
        _, act = _run(model, tokens, layer, hook)
        feature_acts = sae.encode(act)
        sae_out = sae.decode(feature_acts)
        x = act.double().flatten(0, 1)[flattened_mask]
        z = feature_acts.flatten(0, 1)[flattened_mask]
        x_hat = sae_out.flatten(0, 1)[flattened_mask]
        l2_in, l2_out = x.norm(dim=-1), x_hat.norm(dim=-1)
        l2_div = l2_in.clone()
        l2_div[l2_div.abs() < 0.0001] = 1
        lists["l2_ratio"].append(l2_out / l2_div)
        lists["relative_reconstruction_bias"].append(
            ((x_hat.norm(dim=-1) ** 2).mean() / (x * x_hat).sum(-1).mean()).unsqueeze(0))
        lists["l0"].append((z != 0).sum(-1).double())
        lists["l1"].append(z.sum(-1))
        resid = (x - x_hat).pow(2).sum(-1)
        lists["mse"].append(resid / flattened_mask.sum())
        lists["explained_variance_legacy"].append(1 - resid / (x - x.mean(0)).pow(2).sum(-1))
        mean_sum_of_squares.append(x.pow(2).sum(-1).mean(0))
        mean_act_per_dimension.append(x.pow(2).mean(0))
        mean_sum_of_resid_squared.append(resid.mean(0))
        lists["cossim"].append(((x / x.norm(dim=-1, keepdim=True)) * (x_hat / x_hat.norm(dim=-1, keepdim=True))).sum(-1))
        total_feature_acts += ((feature_acts * mask[..., None]) > 0).double().sum(dim=(0, 1))
        total_tokens += int(mask.sum())
        inputs.append(x)
        outputs.append(x_hat)
    out = {name: torch.cat(v).mean().item() for name, v in lists.items()}
    ms = torch.stack(mean_sum_of_squares).mean(0)
    mad = torch.cat(mean_act_per_dimension).mean(0)
    out["explained_variance"] = (1 - torch.stack(mean_sum_of_resid_squared).mean(0) / (ms - mad ** 2)).item()
    density = total_feature_acts / total_tokens
    out["frac_alive"] = (density > 0).double().mean().item()
    out["freq_over_1_percent"] = (density > 0.01).double().mean().item()
    out["freq_over_10_percent"] = (density > 0.1).double().mean().item()
    x_all, x_hat_all = torch.cat(inputs), torch.cat(outputs)
    out["centred_explained_variance"] = 1 - ((x_all - x_hat_all).pow(2).sum()
                                             / (x_all - x_all.mean(0)).pow(2).sum()).item()
    out["mse_per_element"] = (x_all - x_hat_all).pow(2).mean().item()
    out["tokens"] = total_tokens
    return out


def sae_bench_metrics(down: dict[str, float], sparse: dict[str, float]) -> dict[str, float]:
    """The reference numbers under sae-bench's metric names (suite.catalog maps them)."""
    return {
        "loss_recovered": down["ce_loss_score"], "kl_score": down["kl_div_score"],
        "ce_clean": down["ce_loss_without_sae"], "ce_zero": down["ce_loss_with_ablation"],
        "ce_sae": down["ce_loss_with_sae"], "kl_zero": down["kl_div_with_ablation"], "kl_sae": down["kl_div_with_sae"],
        "eval_tokens": down["ce_positions"],
        "l0": sparse["l0"], "l1": sparse["l1"], "dead_fraction": 1 - sparse["frac_alive"],
        "freq_over_1_percent": sparse["freq_over_1_percent"], "freq_over_10_percent": sparse["freq_over_10_percent"],
        "explained_variance": sparse["centred_explained_variance"],
        "explained_variance_saebench": sparse["explained_variance"],
        "explained_variance_legacy": sparse["explained_variance_legacy"],
        "mse": sparse["mse_per_element"], "mse_saebench": sparse["mse"], "cossim": sparse["cossim"],
        "l2_ratio": sparse["l2_ratio"], "relative_reconstruction_bias": sparse["relative_reconstruction_bias"],
        "sparsity_eval_tokens": sparse["tokens"],
    }
