"""Plain job and result types: the only part of `suite` that `harness` may import.

They carry no TOML, DuckDB or torch, so the engine and the declarative side agree on a contract
without knowing each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Bump when the meaning of a stored number changes, so old results are not silently reused.
JOB_KEY_VERSION = 1


@dataclass(frozen=True)
class DatasetRef:
    """Where text comes from: a hub dataset, a local json/text/parquet builder, or `builtin:`."""

    path: str
    split: str = "train"
    column: str = "text"
    name: str | None = None
    data_files: tuple[str, ...] | None = None
    revision: str | None = None
    streaming: bool = True

    def label(self) -> str:
        parts = [self.path] + ([self.name] if self.name else []) + [self.split]
        return ":".join(parts)


@dataclass(frozen=True)
class ModelRef:
    name: str  # the spec's alias, e.g. "base"
    id: str  # hub id, local path, or builtin:<name>
    revision: str | None = None
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    trust_remote_code: bool = False


@dataclass(frozen=True)
class TrainSettings:
    dataset: DatasetRef
    tokens: int
    ctx_len: int
    batch_size: int  # sequences per step; an SAE step sees batch_size * ctx_len tokens
    lr: float
    seed: int = 0
    lr_warmup_steps: int = 0
    buffer_batches: int = 4  # shuffle buffer size, in SAE batches

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.ctx_len


@dataclass(frozen=True)
class SaeSettings:
    arch: str = "topk"
    k: int = 32
    latents: int = 4096
    aux_k: int = 0  # 0 = d_model // 2 (sparsify's default)
    aux_coef: float = 1 / 32
    dead_tokens: int = 10_000_000  # a latent silent this many tokens counts as dead for AuxK


@dataclass(frozen=True)
class AbsorptionSettings:
    """SAEBench first-letter absorption eval; defaults as SAEBench."""

    icl_examples: int = 10
    max_words: int = 0  # 0 = every single-token alphabetic word of the vocabulary
    probe_epochs: int = 50
    sparse_probe_epochs: int = 50
    sparse_probe_l1: float = 0.01
    f1_threshold: float = 0.6  # letters whose ground-truth probe F1 is at most this are left out
    min_letters: int = 20  # fewer good letters than this: no number, a reason instead
    f1_jump: float = 0.03
    max_k: int = 10
    batch_size: int = 32
    seed: int = 42


@dataclass(frozen=True)
class EvalSettings:
    name: str
    dataset: DatasetRef
    tokens: int


@dataclass(frozen=True)
class Job:
    """One SAE: a model, a layer, a training stream and SAE settings, scored on the evals."""

    model: ModelRef
    layer: int
    train: TrainSettings
    sae: SaeSettings
    evals: tuple[EvalSettings, ...]
    log_every: int = 10
    absorption: AbsorptionSettings | None = None  # None: not scored
    key: str = field(default="", compare=False)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the stored numbers (not logging cadence)."""
        return {
            "version": JOB_KEY_VERSION,
            "model": asdict(self.model),
            "layer": self.layer,
            "train": asdict(self.train),
            "sae": asdict(self.sae),
            "evals": sorted((asdict(e) for e in self.evals), key=lambda e: e["name"]),
            "absorption": asdict(self.absorption) if self.absorption else None,
        }

    def with_key(self) -> "Job":
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        return Job(self.model, self.layer, self.train, self.sae, self.evals, self.log_every, self.absorption, digest)

    @property
    def job_id(self) -> str:
        return self.key[:12]

    @property
    def group_key(self) -> tuple[ModelRef, TrainSettings]:
        """Jobs with the same model and training stream share one forward pass."""
        return (self.model, self.train)

    def describe(self) -> str:
        return (
            f"{self.model.name} layer {self.layer} {self.sae.arch} k={self.sae.k} "
            f"latents={self.sae.latents} lr={self.train.lr:g}"
        )


@dataclass
class TrainLogRow:
    step: int
    tokens: int
    loss: float
    fvu: float
    l0: float
    dead_fraction: float


@dataclass
class JobResult:
    metrics: dict[str, dict[str, float]]  # eval name -> metric -> value
    train_seconds: float
    tokens_per_second: float
    checkpoint_path: str
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    # eval name -> metric -> (low, high) 95% bootstrap interval, for metrics that are token means
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


class JobReporter(Protocol):
    """How the harness hands results back; the suite implements it with the store."""

    def job_started(self, job: Job) -> None: ...

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None: ...

    def job_failed(self, job: Job, error: str) -> None: ...

    def job_finished(self, job: Job, result: JobResult) -> None: ...
