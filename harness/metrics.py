"""SAEBench core metrics, accumulated over eval batches in float64.

`DownstreamStats` follows `get_downstream_reconstruction_metrics` (sae_bench/evals/core/main.py):
per-position CE of positions t < T-1 and KL of every position, each masked by "the input token
is not special", pooled over all batches before the means and scores are taken.
`ReconstructionStats` follows `get_sparsity_and_variance_metrics`: per-token quantities over the
non-special tokens of each batch, means over all tokens, a few per-batch quantities averaged
over batches (as SAEBench does), and per-latent firing counts for the density metrics. Where
SAEBench's formula is a known bug we store the corrected number under SAEBench's name and
SAEBench's number beside it (see `suite.catalog.DIFFERENCES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from suite.jobs import DensityBin

BOOTSTRAP_SAMPLES = 1000
DENSITY_BIN_WIDTH = 0.5  # log10 units
DENSITY_MIN_LOG10 = -8.0


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
    """KL(clean || patched) per position [B, T] from clean log-probs [B, T, V] and patched logits."""
    patched_logp = torch.log_softmax(logits.float(), dim=-1)
    return (clean_logp.exp() * (clean_logp - patched_logp)).sum(-1)


def _per_unit(values: torch.Tensor, index: torch.Tensor, units: int) -> np.ndarray:
    shape = (units, *values.shape[1:])
    return torch.zeros(shape, dtype=torch.float64, device=values.device).index_add_(0, index, values).cpu().numpy()


class ReconstructionStats:
    """Sparsity, density and reconstruction metrics of one SAE over the sparsity batches."""

    def __init__(self, latents: int, d_model: int):
        self.d_model = d_model
        self.n = 0
        self.fired = torch.zeros(latents, dtype=torch.float64)  # tokens on which each latent fired
        self.sums = {name: 0.0 for name in ("l0", "l1", "sse", "x_sq", "ev_legacy", "mse_saebench", "cos", "l2_ratio")}
        self.x_sum = torch.zeros(d_model, dtype=torch.float64)
        self.batch_rrb: list[float] = []  # per-batch relative reconstruction bias
        self.batch_mean_sq: list[float] = []  # per-batch mean |x|^2 (SAEBench's mean_sum_of_squares)
        self.batch_mean_resid: list[float] = []  # per-batch mean |x - x_hat|^2
        self.units: dict[str, list[np.ndarray]] = {k: [] for k in ("n", "l0", "sse", "x", "x_sq", "cos")}

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor,
            sequence: torch.Tensor | None = None) -> None:
        """One eval batch: [n, d] activations of its non-special tokens, their reconstructions and
        [n, latents] codes. `sequence` [n] says which sequence each row came from (the resampling
        units of the bootstrap intervals; default: the batch is one unit)."""
        if x.shape[0] == 0:
            return
        x, x_hat, latents = x.double(), x_hat.double(), latents.double()
        n = x.shape[0]
        err = (x - x_hat).pow(2).sum(-1)
        x_norm, x_hat_norm = x.norm(dim=-1), x_hat.norm(dim=-1)
        cos = (x / x_norm[:, None] * (x_hat / x_hat_norm[:, None])).sum(-1)  # SAEBench: NaN for zero vectors
        active = latents != 0
        l0 = active.sum(-1).double()
        centred_total = (x - x.mean(0)).pow(2).sum(-1)
        denominator = torch.where(x_norm.abs() < 1e-4, torch.ones_like(x_norm), x_norm)
        self._add_units(x, err, cos, l0, sequence)
        self.n += n
        self.fired += (latents > 0).sum(0).double().cpu()
        self.sums["l0"] += float(l0.sum())
        self.sums["l1"] += float(latents.sum())
        self.sums["sse"] += float(err.sum())
        self.sums["x_sq"] += float(x.pow(2).sum())
        self.sums["ev_legacy"] += float((1 - err / centred_total).sum())
        self.sums["mse_saebench"] += float((err / n).sum())
        self.sums["cos"] += float(cos.sum())
        self.sums["l2_ratio"] += float((x_hat_norm / denominator).sum())
        self.x_sum += x.sum(0).cpu()
        self.batch_rrb.append(_ratio(float(x_hat_norm.pow(2).mean()), float((x * x_hat).sum(-1).mean())))
        self.batch_mean_sq.append(float(x.pow(2).sum(-1).mean()))
        self.batch_mean_resid.append(float(err.mean()))

    def _add_units(self, x, err, cos, l0, sequence) -> None:
        if sequence is None:
            sequence = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        units = int(sequence.max()) + 1
        index = sequence.to(x.device)
        ones = torch.ones_like(err)
        for name, values in (("n", ones), ("l0", l0), ("sse", err), ("x", x), ("x_sq", x.pow(2).sum(-1)),
                             ("cos", cos)):
            self.units[name].append(_per_unit(values, index, units))

    def intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals over sequences for l0, explained_variance, mse and cossim."""
        if not self.units["n"]:
            return {}
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

    def frequencies(self) -> torch.Tensor:
        """Per-latent firing frequency over the scored tokens (SAEBench's feature_density)."""
        return self.fired / max(self.n, 1)

    def density_histogram(self) -> list[DensityBin]:
        """Latents per log10-frequency bin of width 0.5 from 1e-8 to 1, plus the never-fired."""
        frequency = self.frequencies()
        bins = [DensityBin(None, None, int((frequency == 0).sum()))]
        live = frequency[frequency > 0].log10().clamp(DENSITY_MIN_LOG10, -1e-12)
        edges = np.arange(DENSITY_MIN_LOG10, DENSITY_BIN_WIDTH / 2, DENSITY_BIN_WIDTH)
        index = ((live - DENSITY_MIN_LOG10) / DENSITY_BIN_WIDTH).floor().long()
        counts = torch.bincount(index, minlength=len(edges) - 1)
        for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
            bins.append(DensityBin(float(low), float(high), int(counts[i])))
        return bins

    def result(self) -> dict[str, float]:
        n, d = self.n, self.d_model
        if n == 0:
            return {}
        mean = self.x_sum / n
        total = self.sums["x_sq"] - n * float(mean.pow(2).sum())  # sum |x - mean|^2
        frequency = self.frequencies()
        # SAEBench's total variance: mean |x|^2 minus the square of the mean over batches and
        # dimensions of E[x_d^2], i.e. (mean |x|^2 / d)^2 (core/main.py; SAELens #659).
        mean_sq = float(np.mean(self.batch_mean_sq))
        saebench_total = mean_sq - (mean_sq / d) ** 2
        return {
            "l0": self.sums["l0"] / n,
            "l1": self.sums["l1"] / n,
            "dead_fraction": float((frequency == 0).double().mean()),
            "freq_over_1_percent": float((frequency > 0.01).double().mean()),
            "freq_over_10_percent": float((frequency > 0.1).double().mean()),
            "explained_variance": 1 - _ratio(self.sums["sse"], total),
            "explained_variance_saebench": 1 - _ratio(float(np.mean(self.batch_mean_resid)), saebench_total),
            "explained_variance_legacy": self.sums["ev_legacy"] / n,
            "mse": self.sums["sse"] / (n * d),
            "mse_saebench": self.sums["mse_saebench"] / n,
            "cossim": self.sums["cos"] / n,
            "l2_ratio": self.sums["l2_ratio"] / n,
            "relative_reconstruction_bias": float(np.mean(self.batch_rrb)),
            "sparsity_eval_tokens": float(n),
        }


class DownstreamStats:
    """Mean CE (clean / zero / SAE) over CE positions and mean KL (zero / SAE) over KL positions."""

    CE = ("ce_clean", "ce_zero", "ce_sae")
    KL = ("kl_zero", "kl_sae")

    def __init__(self):
        self.sums = {name: 0.0 for name in (*self.CE, *self.KL)}
        self.count = {"ce": 0, "kl": 0}
        self.units: dict[str, list[np.ndarray]] = {k: [] for k in ("n_ce", "n_kl", *self.sums)}

    def add(self, ce_mask: torch.Tensor, kl_mask: torch.Tensor, **per_token: torch.Tensor) -> None:
        """`ce_mask` [B, T-1] and `kl_mask` [B, T] select the scored positions of the CE tensors
        (`ce_*`, [B, T-1]) and KL tensors (`kl_*`, [B, T]). Each sequence is one bootstrap unit."""
        self.count["ce"] += int(ce_mask.sum())
        self.count["kl"] += int(kl_mask.sum())
        self.units["n_ce"].append(ce_mask.sum(-1).double().cpu().numpy())
        self.units["n_kl"].append(kl_mask.sum(-1).double().cpu().numpy())
        for name, values in per_token.items():
            mask = ce_mask if name in self.CE else kl_mask
            masked = torch.where(mask, values.double(), torch.zeros_like(values, dtype=torch.float64))
            self.sums[name] += float(masked.sum())
            self.units[name].append(masked.sum(-1).cpu().numpy())

    def intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals over sequences for loss_recovered, kl_score and ce_sae."""
        if not self.units["n_ce"]:
            return {}
        units = {k: np.concatenate(v) for k, v in self.units.items() if v}
        return bootstrap(units, {
            "loss_recovered": lambda s: (s["ce_zero"] - s["ce_sae"]) / (s["ce_zero"] - s["ce_clean"]),
            "kl_score": lambda s: (s["kl_zero"] - s["kl_sae"]) / s["kl_zero"],
            "ce_sae": lambda s: s["ce_sae"] / s["n_ce"],
        }, level, seed, count_key="n_ce")

    def result(self) -> dict[str, float]:
        if not self.count["ce"] or not self.count["kl"]:
            return {}
        means = {name: total / self.count["ce" if name in self.CE else "kl"] for name, total in self.sums.items()}
        return {
            **means,
            "loss_recovered": loss_recovered(means["ce_clean"], means["ce_zero"], means["ce_sae"]),
            "kl_score": kl_score(means["kl_zero"], means["kl_sae"]),
            "eval_tokens": float(self.count["ce"]),
        }


def bootstrap(units: dict[str, np.ndarray], statistics: dict[str, Callable[[dict], np.ndarray]],
              level: float = 0.95, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES,
              count_key: str = "n") -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over units (sequences): each resample draws units with replacement,
    sums their per-unit totals, and recomputes each statistic from the sums (vectorised).
    Fewer than 2 units give no interval."""
    count = len(units[count_key])
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
