"""Training: every SAE of a (model, training stream) group learns from the same forward passes.

One pass through the model captures all requested layers (stopping after the deepest), the
activations of non-special positions go through one shuffle buffer, and each SAE takes an Adam
step on each shuffled batch. A SAE whose loss turns non-finite stops; the others go on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from rich.progress import Progress

from harness.activations import ShuffleBuffer, capture
from harness.models import LoadedModel
from harness.saes import SparseAutoencoder, StepContext, build_sae
from harness.tokens import iter_windows, special_mask
from suite.jobs import Job, JobReporter, TrainLogRow, TrainSettings

LOG_FLUSH_ROWS = 20  # train_log rows per store write: bounded loss on a crash, few writes


@dataclass
class SaeTrainer:
    job: Job
    sae: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    since_fired: torch.Tensor
    total_steps: int = 1
    step: int = 0
    tokens: int = 0
    failure: str | None = None
    pending_log: list[TrainLogRow] = field(default_factory=list)

    @classmethod
    def create(cls, job: Job, d_model: int, device: torch.device) -> "SaeTrainer":
        generator = torch.Generator().manual_seed(job.train.seed)
        sae = build_sae(d_model, job.sae, generator).to(device)
        optimizer = torch.optim.Adam(sae.parameters(), lr=job.train.lr)
        since_fired = torch.zeros(job.sae.latents, dtype=torch.long, device=device)
        total_steps = max(1, -(-job.train.tokens // job.train.batch_tokens))
        return cls(job, sae, optimizer, since_fired, total_steps)

    def lr_scale(self) -> float:
        warmup = self.job.train.lr_warmup_steps
        return min(1.0, (self.step + 1) / warmup) if warmup else 1.0

    def train_step(self, x: torch.Tensor) -> None:
        if self.failure:
            return
        x = x.float()
        if self.step == 0:
            self.sae.init_from_batch(x)
        dead = self.since_fired >= self.job.sae.dead_tokens
        out = self.sae.training_loss(x, StepContext(self.step, self.total_steps, dead))
        loss = out.loss
        for group in self.optimizer.param_groups:
            group["lr"] = self.job.train.lr * self.lr_scale()
        loss.backward()
        self.sae.before_optimizer_step()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sae.after_optimizer_step()
        with torch.no_grad():
            fired = (out.latents != 0).any(0)
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        self.step += 1
        self.tokens += x.shape[0]
        if self.step % self.job.log_every == 0 or self.step == 1:
            self._log(loss, out, dead)

    def _log(self, loss: torch.Tensor, out, dead: torch.Tensor) -> None:
        value = float(loss.detach())  # one device sync per logged step, also our NaN check
        if not math.isfinite(value):
            self.failure = (
                f"training diverged: loss is {value} at step {self.step} ({self.tokens} tokens); "
                f"try a lower lr than {self.job.train.lr:g} or lr_warmup_steps"
            )
            return
        self.pending_log.append(TrainLogRow(
            step=self.step, tokens=self.tokens, loss=value, fvu=float(out.fvu.detach()),
            l0=float((out.latents != 0).sum(-1).float().mean()), dead_fraction=float(dead.float().mean()),
        ))

    def flush(self, reporter: JobReporter, force: bool = False) -> None:
        if self.pending_log and (force or len(self.pending_log) >= LOG_FLUSH_ROWS):
            reporter.train_log(self.job, self.pending_log)
            self.pending_log = []


@dataclass
class GroupTraining:
    trainers: list[SaeTrainer]
    seconds: float
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


def train_group(lm: LoadedModel, train: TrainSettings, jobs: list[Job], reporter: JobReporter,
                progress: Progress | None = None) -> GroupTraining:
    layers = sorted({job.layer for job in jobs})
    trainers = [SaeTrainer.create(job, lm.d_model, lm.device) for job in jobs]
    by_layer = {layer: [t for t in trainers if t.job.layer == layer] for layer in layers}
    buffer = ShuffleBuffer(train.buffer_batches * train.batch_tokens, train.batch_tokens,
                           torch.Generator().manual_seed(train.seed))
    special = lm.special_ids
    label = f"training {len(jobs)} SAE(s) on {lm.ref.name}, layers {','.join(map(str, layers))}"
    task = progress.add_task(label, total=train.tokens) if progress else None
    consumed = 0
    start = time.perf_counter()

    def step_all(batch: dict[int, torch.Tensor]) -> bool:
        nonlocal consumed
        take = min(next(iter(batch.values())).shape[0], train.tokens - consumed)
        for layer, layer_trainers in by_layer.items():
            for trainer in layer_trainers:
                trainer.train_step(batch[layer][:take])
                trainer.flush(reporter)
        consumed += take
        if progress is not None:
            progress.update(task, completed=consumed)
        return consumed >= train.tokens

    done = False
    windows = iter_windows(train.dataset, lm.tokenizer, train.ctx_len, train.batch_size, repeat=True)
    for input_ids in windows:
        acts, _ = capture(lm, input_ids, layers)
        keep = ~special_mask(input_ids.to(lm.device), special)
        for batch in buffer.add({layer: acts[layer][keep] for layer in layers}):
            if done := step_all(batch):
                break
        if done or all(t.failure for t in trainers):
            break
    windows.close()
    for trainer in trainers:
        trainer.flush(reporter, force=True)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return GroupTraining(trainers, time.perf_counter() - start, consumed)
