"""SAEBench core metrics, accumulated over eval batches in float64.

Inputs are only the non-special tokens (BOS/EOS excluded by the caller). Reconstruction metrics
need x and x_hat; downstream metrics need per-token CE and KL of the clean, zero-ablated and
SAE-patched runs. Formulas are in docs and in `suite.catalog`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

BOOTSTRAP_SAMPLES = 1000


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when undefined (e.g. an SAE that outputs nothing)."""
    return numerator / denominator if denominator != 0 else math.nan


def loss_recovered(ce_clean: float, ce_zero: float, ce_sae: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean); NaN when zero-ablation costs nothing."""
    return _ratio(ce_zero - ce_sae, ce_zero - ce_clean)


def kl_score(kl_zero: float, kl_sae: float) -> float:
    """(KL_zero - KL_sae) / KL_zero."""
    return _ratio(kl_zero - kl_sae, kl_zero)


def token_ce(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position [B, T-1] (position t predicts token t+1)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:, None].to(logits.device)).squeeze(-1)


def token_kl(clean_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(clean || patched) per position [B, T-1] from clean log-probs and patched logits."""
    patched_logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return (clean_logp.exp() * (clean_logp - patched_logp)).sum(-1)


class ReconstructionStats:
    """Sums for l0, dead_fraction, explained variance (global and legacy), mse, cossim and bias."""

    def __init__(self, latents: int, d_model: int):
        self.n = 0
        self.d_model = d_model
        self.fired = torch.zeros(latents, dtype=torch.bool)
        self.l0_sum = 0.0
        self.sse = 0.0  # sum |x - x_hat|^2
        self.x_sum = torch.zeros(d_model, dtype=torch.float64)
        self.x_sq_sum = 0.0  # sum |x|^2
        self.ev_legacy_sum = 0.0
        self.cos_sum = 0.0
        self.xhat_sq_sum = 0.0
        self.x_dot_xhat_sum = 0.0
        self.units: dict[str, list[np.ndarray]] = {k: [] for k in ("n", "l0", "sse", "x", "x_sq", "cos")}

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor,
            sequence: torch.Tensor | None = None) -> None:
        """One batch of [n, d] activations, reconstructions and [n, latents] codes.

        `sequence` [n] says which sequence of the batch each row came from: per-sequence sums
        are the resampling units of the bootstrap intervals (default: the batch is one unit).
        """
        x, x_hat = x.double(), x_hat.double()
        err = (x - x_hat).pow(2).sum(-1)
        cos = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1)
        self._add_units(x, err, cos, (latents != 0).sum(-1).double(), sequence)
        self.n += x.shape[0]
        self.fired |= (latents != 0).any(0).cpu()
        self.l0_sum += float((latents != 0).sum())
        self.sse += float(err.sum())
        self.x_sum += x.sum(0).cpu()
        self.x_sq_sum += float(x.pow(2).sum())
        batch_total = (x - x.mean(0)).pow(2).sum(-1)
        self.ev_legacy_sum += float((1 - err / batch_total).sum())
        self.cos_sum += float(cos.sum())
        self.xhat_sq_sum += float(x_hat.pow(2).sum())
        self.x_dot_xhat_sum += float((x * x_hat).sum())

    def _add_units(self, x, err, cos, l0, sequence) -> None:
        if sequence is None:
            sequence = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        units = int(sequence.max()) + 1 if sequence.numel() else 0
        index = sequence.to(x.device)

        def per_unit(values: torch.Tensor) -> np.ndarray:
            shape = (units, *values.shape[1:])
            return torch.zeros(shape, dtype=torch.float64, device=x.device).index_add_(0, index, values).cpu().numpy()

        ones = torch.ones_like(err)
        for name, values in (("n", ones), ("l0", l0), ("sse", err), ("x", x), ("x_sq", x.pow(2).sum(-1)), ("cos", cos)):
            self.units[name].append(per_unit(values))

    def intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals over sequences for l0, explained_variance, mse and cossim."""
        units = {k: np.concatenate(v) for k, v in self.units.items()}
        d = self.d_model

        def explained(s):
            total = s["x_sq"] - (s["x"] ** 2).sum(-1) / s["n"]
            return 1 - s["sse"] / total

        return bootstrap(units, {
            "l0": lambda s: s["l0"] / s["n"],
            "explained_variance": explained,
            "mse": lambda s: s["sse"] / (s["n"] * d),
            "cossim": lambda s: s["cos"] / s["n"],
        }, level, seed)

    def result(self) -> dict[str, float]:
        n = self.n
        mean = self.x_sum / n
        total = self.x_sq_sum - n * float(mean.pow(2).sum())  # sum |x - mean|^2
        return {
            "l0": self.l0_sum / n,
            "dead_fraction": 1 - float(self.fired.float().mean()),
            "explained_variance": 1 - _ratio(self.sse, total),
            "explained_variance_legacy": self.ev_legacy_sum / n,
            "mse": self.sse / (n * self.d_model),
            "cossim": self.cos_sum / n,
            "relative_reconstruction_bias": _ratio(self.xhat_sq_sum, self.x_dot_xhat_sum),
            "eval_tokens": float(n),
        }


class DownstreamStats:
    """Mean CE of clean / zero / SAE runs and mean KL of zero / SAE runs over scored positions."""

    def __init__(self):
        self.sums = {"ce_clean": 0.0, "ce_zero": 0.0, "ce_sae": 0.0, "kl_zero": 0.0, "kl_sae": 0.0}
        self.count = 0
        self.units: dict[str, list[np.ndarray]] = {k: [] for k in ("n", *self.sums)}

    def add(self, mask: torch.Tensor, **per_token: torch.Tensor) -> None:
        """`mask` [B, T-1] selects scored positions; keyword tensors are per-token values.
        Each row (sequence) is one resampling unit of the bootstrap."""
        self.count += int(mask.sum())
        self.units["n"].append(mask.sum(-1).double().cpu().numpy())
        for name, values in per_token.items():
            masked = torch.where(mask, values.double(), torch.zeros_like(values, dtype=torch.float64))
            self.sums[name] += float(masked.sum())
            self.units[name].append(masked.sum(-1).cpu().numpy())

    def intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals over sequences for loss_recovered, kl_score and ce_sae."""
        units = {k: np.concatenate(v) for k, v in self.units.items() if v}
        return bootstrap(units, {
            "loss_recovered": lambda s: (s["ce_zero"] - s["ce_sae"]) / (s["ce_zero"] - s["ce_clean"]),
            "kl_score": lambda s: (s["kl_zero"] - s["kl_sae"]) / s["kl_zero"],
            "ce_sae": lambda s: s["ce_sae"] / s["n"],
        }, level, seed)

    def result(self) -> dict[str, float]:
        means = {name: total / self.count for name, total in self.sums.items()}
        return {
            **means,
            "loss_recovered": loss_recovered(means["ce_clean"], means["ce_zero"], means["ce_sae"]),
            "kl_score": kl_score(means["kl_zero"], means["kl_sae"]),
        }


def bootstrap(units: dict[str, np.ndarray], statistics: dict[str, Callable[[dict], np.ndarray]],
              level: float = 0.95, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over units (sequences): each resample draws units with replacement,
    sums their per-unit totals, and recomputes each statistic from the sums (vectorised).
    Fewer than 2 units give no interval."""
    count = len(units["n"])
    if count < 2:
        return {}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(count, np.full(count, 1 / count), size=samples).astype(np.float64)
    sums = {name: weights @ values for name, values in units.items()}
    tail = (1 - level) / 2
    intervals = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, statistic in statistics.items():
            values = statistic(sums)
            values = values[np.isfinite(values)]
            if len(values) >= samples // 2:
                low, high = np.quantile(values, [tail, 1 - tail])
                intervals[name] = (float(low), float(high))
    return intervals
