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
    """SAEBench's first-letter absorption eval (sae_bench/evals/absorption); every default is
    SAEBench's (file and name in the comments), except the two speed options marked "not in SAEBench"."""

    icl_examples: int = 10  # prompting.create_icl_prompt max_icl_examples (probing.py, feature_absorption.py)
    train_fraction: float = 0.8  # probing.create_dataset_probe_training train_test_fraction
    max_words: int = 0  # not in SAEBench: 0 = every single-token alphabetic word; else a random subset
    words_per_context: int = 1  # not in SAEBench: >1 = consecutive words share one ICL sample (faster)
    batch_size: int = 64  # prompts per forward pass (common.train_and_save_probes batch_size)
    probe_batch_size: int = 64  # common.train_and_save_probes batch_size
    probe_epochs: int = 50  # common.train_and_save_probes num_epochs
    probe_lr: float = 1e-2  # common.train_and_save_probes lr
    probe_end_lr: float = 1e-5  # probing.train_multi_probe end_lr
    probe_weight_decay: float = 1e-4  # probing.train_linear_probe_for_task weight_decay
    sparse_probe_batch_size: int = 4096  # eval_config.k_sparse_probe_batch_size
    sparse_probe_epochs: int = 50  # eval_config.k_sparse_probe_num_epochs
    sparse_probe_l1: float = 0.01  # eval_config.k_sparse_probe_l1_decay
    sparse_probe_lr: float = 1e-2  # k_sparse_probing.train_sparse_multi_probe lr
    sparse_probe_end_lr: float = 1e-5  # k_sparse_probing.train_sparse_multi_probe end_lr
    sparse_probe_weight_decay: float = 1e-6  # k_sparse_probing.train_sparse_multi_probe l2_decay
    f1_threshold: float = 0.6  # eval_config.min_GT_probe_f1: letters scored need probe F1 above this
    min_letters: int = 20  # eval_config.min_feats_for_eval: fewer good letters -> n/a with a reason
    f1_jump: float = 0.03  # eval_config.f1_jump_threshold
    max_k: int = 10  # eval_config.max_k_value
    seed: int = 42  # eval_config.random_seed


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
