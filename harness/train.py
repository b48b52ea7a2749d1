"""Training: every SAE of a (model, training stream) group learns from the same forward passes.

One pass through the model captures all requested hook sites (stopping after the last one), the
activations of non-special positions (BOS/EOS/PAD) go through one shuffle buffer, and each SAE
takes an Adam step on each shuffled batch. Once the buffer holds every row still to be trained
on, it is drained: no window is forwarded whose activations would go unused. A step whose loss or weights turn non-finite, or whose loss
explodes (EXPLODED), fails that SAE with the step it happened at (every step is checked, on the
device, without a host sync); the others go on.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.progress import Progress

from harness.activations import HookSite, ShuffleBuffer, capture
from harness.fused import FusedTopK, choose_decoder, fuse_key
from harness.models import LoadedModel
from harness.saes import SparseAutoencoder, StepContext, build_sae
from harness.tokens import iter_windows, special_mask
from suite.jobs import Job, JobReporter, TrainLogRow, TrainSettings

LOG_FLUSH_SECONDS = 5.0  # train_log rows reach the store this often (live curves in the TUI)
# A loss this many times the first step's (and at least this large) counts as diverged even while
# finite: the losses are normalised (FVU-like, ~1 at the first step), so no SAE that is learning
# gets near it, while an lr of 1e6 reaches 1e25 within five steps.
EXPLODED = 1e4


def site_of(job: Job) -> HookSite:
    return HookSite(job.sae.layer, job.sae.hook)


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
    first_bad: torch.Tensor | None = None  # on device: (step, loss, why) of the first bad step; step -1 if none
    first_loss: torch.Tensor | None = None  # on device: the first step's loss, the scale of "exploded"
    pending_log: list[TrainLogRow] = field(default_factory=list)

    @classmethod
    def create(cls, job: Job, d_model: int, device: torch.device) -> "SaeTrainer":
        train, settings = job.sae.train, job.sae.sae
        assert train is not None and settings is not None
        generator = torch.Generator().manual_seed(train.seed)
        sae = build_sae(d_model, settings, generator).to(device)
        optimizer = torch.optim.Adam(sae.parameters(), lr=train.lr)
        since_fired = torch.zeros(settings.latents, dtype=torch.long, device=device)
        total_steps = max(1, -(-train.tokens // train.batch_tokens))
        first_bad = torch.tensor([-1.0, 0.0, 0.0], device=device)  # step, loss, why (see check_finite)
        return cls(job, sae, optimizer, since_fired, total_steps, first_bad=first_bad)

    @property
    def train(self) -> TrainSettings:
        assert self.job.sae.train is not None
        return self.job.sae.train

    def lr_scale(self) -> float:
        warmup = self.train.lr_warmup_steps
        return min(1.0, (self.step + 1) / warmup) if warmup else 1.0

    def train_step(self, x: torch.Tensor) -> None:
        if self.failure:
            return
        x = x.float()
        if self.step == 0:
            self.sae.init_from_batch(x)
        dead = self.since_fired >= self.job.sae.sae.dead_tokens
        out = self.sae.training_loss(x, StepContext(self.step, self.total_steps, dead))
        for group in self.optimizer.param_groups:
            group["lr"] = self.train.lr * self.lr_scale()
        out.loss.backward()
        self.sae.before_optimizer_step()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sae.after_optimizer_step()
        with torch.no_grad():
            fired = (out.latents != 0).any(0)
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        self.after_step(out.loss.detach(), x.shape[0],
                        lambda: (out.fvu.detach(), (out.latents != 0).sum(-1).float().mean()), dead)

    def after_step(self, loss: torch.Tensor, tokens: int,
                   fvu_and_l0: Callable[[], tuple[torch.Tensor, torch.Tensor]], dead: torch.Tensor) -> None:
        """Book-keeping once the weights moved: divergence tracking, counters, the log row (whose
        FVU and L0 are computed only on logged steps)."""
        with torch.no_grad():
            self._track_non_finite(loss)
        self.step += 1
        self.tokens += tokens
        if self.step % self.job.log_every == 0 or self.step == 1:
            fvu, l0 = fvu_and_l0()
            self._log(loss, fvu, l0, dead)

    def _track_non_finite(self, loss: torch.Tensor) -> None:
        """Record the first step whose loss or updated weights are non-finite, on the device:
        every step is checked, with no host sync on the hot path (`check_finite` reads it)."""
        assert self.first_bad is not None
        weights_ok = torch.stack([torch.isfinite(p).all() for p in self.sae.parameters()]).all()
        loss = loss.float()
        if self.first_loss is None:
            self.first_loss = loss.abs().clamp_min(1.0)
        exploded = loss.abs() > EXPLODED * self.first_loss
        bad = ~torch.isfinite(loss) | ~weights_ok | exploded
        newly = bad & (self.first_bad[0] < 0)
        why = torch.where(weights_ok, torch.where(torch.isfinite(loss), 2.0, 0.0), 1.0)
        here = torch.stack([torch.tensor(float(self.step), device=loss.device), loss, why])
        self.first_bad.copy_(torch.where(newly, here, self.first_bad))

    def check_finite(self) -> bool:
        """Fail this SAE if a step's loss or weights went non-finite (one host sync)."""
        if self.failure:
            return False
        assert self.first_bad is not None
        step, loss, why = self.first_bad.tolist()
        if step < 0 and not all(bool(torch.isfinite(p).all()) for p in self.sae.parameters()):
            step, loss, why = self.step - 1, math.nan, 1.0  # changed outside a tracked step
        if step >= 0:
            detail = {0.0: "", 1.0: ", weights not finite",
                      2.0: f", over {EXPLODED:g} times the first step's"}[why]
            self.failure = (f"diverged at step {int(step) + 1} (loss={loss:.6g}{detail}): try a lower lr than "
                            f"{self.train.lr:g} or lr_warmup_steps")
            self.pending_log = [r for r in self.pending_log if r.step <= step]
        return self.failure is None

    def _log(self, loss: torch.Tensor, fvu: torch.Tensor, l0: torch.Tensor, dead: torch.Tensor) -> None:
        if not self.check_finite():
            return
        self.pending_log.append(TrainLogRow(
            step=self.step, tokens=self.tokens, loss=float(loss), fvu=float(fvu), l0=float(l0),
            dead_fraction=float(dead.float().mean()),
        ))

    def flush(self, reporter: JobReporter) -> None:
        if self.pending_log:
            reporter.train_log(self.job, self.pending_log)
            self.pending_log = []


@dataclass
class GroupTraining:
    trainers: list[SaeTrainer]
    seconds: float
    tokens: int
    fingerprint: str  # sha256 of the token windows the group consumed
    windows: int = 0  # token windows (batches of ctx_len sequences) forwarded through the model

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


class _Single:
    """One SAE stepping alone (architectures that are not fused, or alone in their shape)."""

    def __init__(self, trainer: SaeTrainer):
        self.trainer = trainer

    def train_step(self, batch: dict, take: int) -> None:
        self.trainer.train_step(batch[site_of(self.trainer.job)][:take])

    def unstack(self) -> None:
        pass


class _Fused:
    """SAEs of one shape stepping as one batched computation (harness.fused)."""

    def __init__(self, trainers: list[SaeTrainer], decoder: str):
        self.stack = FusedTopK(trainers, decoder)

    def train_step(self, batch: dict, take: int) -> None:
        self.stack.train_step([batch[site_of(t.job)][:take] for t in self.stack.trainers])

    def unstack(self) -> None:
        self.stack.unstack()


def steppers(trainers: list[SaeTrainer], fuse: bool = True) -> list[_Single | _Fused]:
    """Trainers grouped into fused stacks where their maths stacks (same architecture and shape)
    and fusing pays (`choose_decoder`), singles otherwise; `fuse=False` steps every SAE alone."""
    stacks: dict = {}
    out: list[_Single | _Fused] = []
    for trainer in trainers:
        key = fuse_key(trainer) if fuse else None
        if key is None:
            out.append(_Single(trainer))
        else:
            stacks.setdefault(key, []).append(trainer)
    for group in stacks.values():
        sae = group[0].sae
        decoder = choose_decoder(sae.d_in, sae.d_sae, sae.settings.k, sae.W_enc.device)
        if len(group) == 1 or decoder is None:
            out.extend(_Single(trainer) for trainer in group)
        else:
            out.append(_Fused(group, decoder))
    return out


def train_group(lm: LoadedModel, train: TrainSettings, jobs: list[Job], reporter: JobReporter,
                progress: Progress | None = None, fuse: bool = True) -> GroupTraining:
    """Train every job's SAE from shared forward passes. `fuse`: SAEs of one shape step as one
    batched computation (harness.fused); False steps them one by one (same weights on CPU with
    the dense decoder; see harness.fused for the sparse one)."""
    sites = sorted({site_of(job) for job in jobs})
    trainers = [SaeTrainer.create(job, lm.d_model, lm.device) for job in jobs]
    stepping = steppers(trainers, fuse)
    buffer = ShuffleBuffer(train.buffer_batches * train.batch_tokens, train.batch_tokens,
                           torch.Generator().manual_seed(train.seed))
    special = lm.special_ids
    layers = ",".join(sorted({str(s.layer) for s in sites}, key=int))
    label = f"training {len(jobs)} SAE(s) on {lm.ref.name or lm.ref.id}, layers {layers}"
    task = progress.add_task(label, total=train.tokens) if progress else None
    fingerprint = hashlib.sha256()
    consumed = forwarded = 0
    last_flush = time.monotonic()
    start = time.perf_counter()

    def step_all(batch: dict) -> bool:
        nonlocal consumed, last_flush
        take = min(next(iter(batch.values())).shape[0], train.tokens - consumed)
        for stepper in stepping:
            stepper.train_step(batch, take)
        if time.monotonic() - last_flush > LOG_FLUSH_SECONDS:
            for trainer in trainers:
                trainer.flush(reporter)
            last_flush = time.monotonic()
        consumed += take
        if progress is not None:
            progress.update(task, completed=consumed)
        return consumed >= train.tokens

    done = False
    windows = iter_windows(train.dataset, lm.tokenizer, train.ctx_len, train.batch_size, repeat=True)
    try:
        for input_ids in windows:
            forwarded += 1
            fingerprint.update(input_ids.numpy().astype("int64").tobytes())
            with torch.inference_mode():  # no autograd bookkeeping in the LM forward; the rows
                acts, _ = capture(lm, input_ids, sites)  # indexed out below are ordinary tensors
            keep = ~special_mask(input_ids.to(lm.device), special)
            for batch in buffer.add({site: acts[site][keep] for site in sites}):
                if done := step_all(batch):
                    break
            if not done and consumed + len(buffer) >= train.tokens:
                # the buffer holds every row still to train on: no window more to forward
                for batch in buffer.drain():
                    if done := step_all(batch):
                        break
            if done or all(t.failure for t in trainers):
                break
    finally:
        windows.close()
    for stepper in stepping:
        stepper.unstack()
    for trainer in trainers:
        trainer.check_finite()
        if not trainer.failure:
            trainer.sae.finalize()
        trainer.flush(reporter)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return GroupTraining(trainers, time.perf_counter() - start, consumed, fingerprint.hexdigest(), forwarded)
