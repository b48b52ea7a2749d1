"""A planted dictionary: data made from known sparse codes, so recovery can be checked."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.saes import SparseAutoencoder, StepContext, build_sae
from suite.jobs import SaeSettings


@dataclass
class Planted:
    atoms: torch.Tensor  # [n_atoms, d] unit rows
    active: int  # atoms per sample
    generator: torch.Generator

    def sample(self, n: int) -> torch.Tensor:
        n_atoms = self.atoms.shape[0]
        chosen = torch.rand(n, n_atoms, generator=self.generator).argsort(-1)[:, :self.active]
        magnitudes = 0.5 + torch.rand(n, self.active, generator=self.generator)
        codes = torch.zeros(n, n_atoms).scatter_(-1, chosen, magnitudes)
        return codes @ self.atoms + 0.5  # an offset, which b_dec should absorb


def planted(d: int = 32, n_atoms: int = 48, active: int = 4, seed: int = 0) -> Planted:
    generator = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=generator)
    return Planted(atoms / atoms.norm(dim=1, keepdim=True), active, generator)


def train(settings: SaeSettings, data: Planted, steps: int, batch: int = 256, lr: float = 3e-3,
          dead_tokens: int = 5_000) -> SparseAutoencoder:
    """The SparseAutoencoder contract as harness/train.py drives it, in a plain loop."""
    sae = build_sae(data.atoms.shape[1], settings, torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    since_fired = torch.zeros(settings.latents, dtype=torch.long)
    for step in range(steps):
        x = data.sample(batch)
        if step == 0:
            sae.init_from_batch(x)
        out = sae.training_loss(x, StepContext(step, steps, since_fired >= dead_tokens))
        out.loss.backward()
        sae.before_optimizer_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sae.after_optimizer_step()
        since_fired += batch
        since_fired[(out.latents != 0).any(0)] = 0
    sae.finalize()
    return sae.eval()


def recovered_share(sae: SparseAutoencoder, atoms: torch.Tensor, cosine: float = 0.9) -> float:
    """Share of true atoms with a decoder row at cosine > `cosine`."""
    rows = sae.W_dec.detach()
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (atoms @ rows.T).max(dim=1).values
    return float((best > cosine).float().mean())


def mean_l0(sae: SparseAutoencoder, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((sae.encode(x) != 0).sum(-1).float().mean())
