"""Fused training: TopK SAEs of the same shape take their steps as one batched computation.

A training group often holds several SAEs of one shape (one per layer, per seed, per lr-free
setting). Stepping them one by one costs S times the per-op overhead of small matmuls and S
optimizers. Here their weights live stacked (`W_enc [S, d, m]` and so on), one `bmm` encodes
every SAE's batch, one top-k picks the latents, one decode, one backward and one Adam step update
all of them. Each SAE module keeps its parameters as views into the stacks, so checkpoints,
constraints (`before/after_optimizer_step`), divergence checks and logs work on each SAE as before.

Decoding is dense (`latents @ W_dec`, as the unfused path) or sparse: only the k active decoder
rows are gathered (`embedding_bag`) and the backward takes three GEMMs instead of five
(`TopKStep`). `choose_decoder` is a rule measured with benchmarks/fused.py. On CPU the dense
path gives the unfused path's weights bit for bit (tests/test_fused.py); the sparse one sums
the same terms in another order (float32 rounding: weights within 1e-4 after a test run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from harness.saes import TopKSae
from harness.saes.base import SparseAutoencoder

if TYPE_CHECKING:
    from harness.train import SaeTrainer

PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
DECODERS = ("dense", "sparse")


def fusable(sae: SparseAutoencoder) -> bool:
    """Architectures whose maths FusedTopK reproduces exactly; others train one by one."""
    return type(sae) is TopKSae


def fuse_key(trainer: "SaeTrainer") -> tuple | None:
    """SAEs with equal keys can share one stack (same architecture, shape and settings)."""
    sae = trainer.sae
    if not fusable(sae):
        return None
    return (type(sae), sae.d_in, sae.settings, trainer.sae.W_enc.device)


def sparse_decode(values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """sum_j values[s, n, j] * W_dec[s, indices[s, n, j]] for every SAE s: [S, n, d]."""
    S, n, k = indices.shape
    m, d = W_dec.shape[1:]
    offsets = (torch.arange(S, device=indices.device) * m)[:, None, None]
    flat = (indices + offsets).reshape(S * n, k)
    out = F.embedding_bag(flat, W_dec.reshape(S * m, d), per_sample_weights=values.reshape(S * n, k), mode="sum")
    return out.reshape(S, n, d)


class TopKStep(torch.autograd.Function):
    """x_hat, values, indices, pre for every SAE of a stack in one autograd node:
    pre = relu((x - b_dec) @ W_enc + b_enc), (values, indices) = TopK(pre),
    x_hat = sum_j values_j W_dec[indices_j] + b_dec (the k active decoder rows, gathered).

    The backward takes three GEMMs where autograd takes five: the gradient of the [S, n, d] input
    is never formed (b_dec's encoder-side gradient is -(sum over tokens of grad_pre) @ W_enc^T), and
    the gradients of W_dec and of the selected latents are dense products with the [S, n, m]
    latents (faster on CPU than embedding_bag's sorted scatter). Same maths as the dense path,
    sums in another order: not bit-identical. `pre` is returned before the relu (AuxK applies it) and carries a gradient only when used.
    TopK runs before the relu: in a row with fewer than k positive entries the zero-valued picks
    may differ from the dense path's, which changes nothing (they add nothing, get no gradient)."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, b_dec, k: int):
        xc = x - b_dec[:, None, :]
        pre = torch.baddbmm(b_enc[:, None, :], xc, W_enc)
        values, indices = pre.topk(k, dim=-1, sorted=False)  # then relu: one pass less over pre
        values = torch.relu(values)
        x_hat = sparse_decode(values, indices, W_dec) + b_dec[:, None, :]
        ctx.save_for_backward(xc, W_enc, W_dec, pre, values, indices)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(indices)
        return x_hat, values, indices, pre

    @staticmethod
    def backward(ctx, grad_x_hat, grad_values, _grad_indices, grad_pre):
        xc, W_enc, W_dec, pre, values, indices = ctx.saved_tensors
        grad_W_dec = grad_b_dec = None
        grad_top = grad_values
        dense = torch.zeros_like(pre)  # latents first, then (same positions) their gradient
        if grad_x_hat is not None:
            grad_W_dec = torch.bmm(dense.scatter_(-1, indices, values).transpose(1, 2), grad_x_hat)
            grad_b_dec = grad_x_hat.sum(1)
            through_decoder = torch.bmm(grad_x_hat, W_dec.transpose(1, 2)).gather(-1, indices)
            grad_top = through_decoder if grad_top is None else grad_top + through_decoder
        grad_top = grad_top * (values > 0) if grad_top is not None else torch.zeros_like(values)
        dense.scatter_(-1, indices, grad_top)  # every non-selected entry is still zero
        if grad_pre is not None:  # AuxK's gradient through the dense pre-activations (relu'd there)
            dense += grad_pre  # already through the relu (applied by the caller)
            grad_b_enc = dense.sum(1)
        else:  # only the selected entries: k per token, not m
            grad_b_enc = grad_top.new_zeros(pre.shape[0], pre.shape[2]).scatter_add_(
                1, indices.flatten(1), grad_top.flatten(1))
        grad_W_enc = torch.bmm(xc.transpose(1, 2), dense)
        from_encoder = -torch.bmm(grad_b_enc[:, None, :], W_enc.transpose(1, 2))[:, 0, :]
        grad_b_dec = from_encoder if grad_b_dec is None else grad_b_dec + from_encoder
        return None, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None


def dense_latents(values: torch.Tensor, indices: torch.Tensor, m: int) -> torch.Tensor:
    return values.new_zeros(*values.shape[:-1], m).scatter_(-1, indices, values)


class FusedTopK:
    """S TopK SAEs (same d, m, k, settings) stepping together; `trainers[i]` reads `xs[i]`."""

    def __init__(self, trainers: Sequence["SaeTrainer"], decoder: str = "dense"):
        assert len({fuse_key(t) for t in trainers}) == 1 and fuse_key(trainers[0]) is not None
        assert decoder in DECODERS
        self.trainers = list(trainers)
        self.decoder = decoder
        first = self.trainers[0]
        self.settings = first.sae.settings
        self.k = first.sae.k
        self.aux_k = first.sae.aux_k
        self.m = first.sae.d_sae
        self.stacks: dict[str, torch.nn.Parameter] = {}
        for name in PARAMS:
            stacked = torch.stack([getattr(t.sae, name).detach() for t in self.trainers])
            self.stacks[name] = torch.nn.Parameter(stacked)
            for i, trainer in enumerate(self.trainers):
                getattr(trainer.sae, name).data = self.stacks[name].data[i]  # a view: one storage
        self.since_fired = torch.stack([t.since_fired for t in self.trainers])
        for i, trainer in enumerate(self.trainers):
            trainer.since_fired = self.since_fired[i]
        self.optimizer = torch.optim.Adam(list(self.stacks.values()), lr=first.train.lr)

    # ------------------------------------------------------------------ one step

    def train_step(self, xs: Sequence[torch.Tensor]) -> None:
        trainers = self.trainers
        if all(t.failure for t in trainers):
            return
        x = torch.stack([v.float() for v in xs])  # [S, n, d]
        first = trainers[0]
        if first.step == 0:
            for i, trainer in enumerate(trainers):
                trainer.sae.init_from_batch(x[i])
        W_enc, b_enc, W_dec, b_dec = (self.stacks[name] for name in PARAMS)
        dead = self.since_fired >= self.settings.dead_tokens  # [S, m]
        if self.decoder == "dense":
            pre = torch.relu(torch.bmm(x - b_dec[:, None, :], W_enc) + b_enc[:, None, :])  # not baddbmm:
            # its bias gradient sums in another order; this form gives the unfused gradients bit for bit
            values, indices = pre.topk(self.k, dim=-1, sorted=False)
            latents = dense_latents(values, indices, self.m)
            x_hat = torch.bmm(latents, W_dec) + b_dec[:, None, :]
        else:
            x_hat, values, indices, pre = TopKStep.apply(x, W_enc, b_enc, W_dec, b_dec, self.k)
        fvu, total_variance = [], []
        for i in range(len(trainers)):  # per-SAE sums, in the unfused path's order
            tv = (x[i] - x[i].mean(0)).pow(2).sum().clamp_min(1e-12)
            fvu.append((x[i] - x_hat[i]).pow(2).sum() / tv)
            total_variance.append(tv)
        losses = list(fvu)
        num_dead = dead.sum(1).tolist()  # one host sync for every SAE (the unfused path syncs per SAE)
        for i, count in enumerate(num_dead):
            if count:
                aux = self._auxk(x[i], x_hat[i], pre[i], dead[i], int(count), W_dec[i], total_variance[i])
                losses[i] = fvu[i] + self.settings.aux_coef * aux
        torch.stack(losses).sum().backward()
        for name in PARAMS:
            grad = self.stacks[name].grad
            for i, trainer in enumerate(trainers):
                getattr(trainer.sae, name).grad = grad[i] if grad is not None else None
        for trainer in trainers:
            trainer.sae.before_optimizer_step()
        for group in self.optimizer.param_groups:
            group["lr"] = first.train.lr * first.lr_scale()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for trainer in trainers:
            trainer.sae.zero_grad(set_to_none=True)
            trainer.sae.after_optimizer_step()
        with torch.no_grad():
            active = values > 0
            fired = torch.zeros_like(self.since_fired).scatter_add_(1, indices.flatten(1), active.flatten(1).long()) > 0
            self.since_fired += x.shape[1]
            self.since_fired[fired] = 0
        for i, trainer in enumerate(trainers):
            if trainer.failure:
                continue
            trainer.after_step(losses[i].detach(), x.shape[1],
                               lambda i=i: (fvu[i].detach(), active[i].sum(-1).float().mean()), dead[i])

    def _auxk(self, x, x_hat, pre, dead, num_dead: int, W_dec, total_variance) -> torch.Tensor:
        """harness.saes.topk.auxk_loss for one SAE of the stack (same terms, same order)."""
        if self.decoder != "dense":
            pre = torch.relu(pre)  # TopKStep returns pre-activations before the relu
        dead_pre = torch.where(dead[None, :], pre, torch.zeros_like(pre))
        values, indices = dead_pre.topk(min(self.aux_k, num_dead), dim=-1, sorted=False)
        aux_latents = dense_latents(values, indices, self.m)
        residual = (x - x_hat).detach()
        residual_hat = aux_latents @ W_dec
        scale = min(num_dead / self.aux_k, 1.0)
        return scale * (residual_hat - residual).pow(2).sum() / total_variance

    def unstack(self) -> None:
        """Give each SAE its own storage again (checkpoints, scoring and memory after training)."""
        for name in PARAMS:
            for trainer in self.trainers:
                param = getattr(trainer.sae, name)
                param.data = param.data.clone()
                param.grad = None
        for trainer in self.trainers:
            trainer.since_fired = trainer.since_fired.clone()
        self.stacks.clear()
        self.optimizer = None  # type: ignore[assignment]


DECODER: str | None = None  # force "dense" or "sparse" stacks (benchmarks, tests); None = the measured rule
SPARSE_MIN_RATIO = 8  # stacks decode sparsely from latents >= this x k (benchmarks/fused.py)


def choose_decoder(d_in: int, m: int, k: int, device: torch.device) -> str | None:
    """How a stack of this shape steps: "sparse", or None where fusing does not pay and the SAEs
    step one by one. Measured on the demo shape (d 128, m 512, k 32, 3 SAEs, one CPU thread,
    benchmarks/fused.py): sparse stacks 1.24-1.38x the unfused steps, dense stacks 0.94-1.01x,
    so dense stacks run only when asked for (`DECODER`; they give the unfused weights bit for
    bit). A rule, not a timing at run time, so a spec gives the same weights on every run."""
    if DECODER is not None:
        return DECODER
    return "sparse" if m >= SPARSE_MIN_RATIO * k else None
