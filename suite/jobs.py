"""Plain job and result types: the only part of `suite` that `harness` may import.

They carry no TOML, DuckDB or torch, so the engine and the declarative side agree on a contract
without knowing each other.

Two identities matter (design.md, "SAEs, scores and resume"):
- an **SAE** is keyed by what determines its weights: model id, revision and dtype, hook point,
  layer, training data and settings, SAE settings and seed, or, for an imported SAE, the digest
  of its files; never a display alias and never an eval;
- a **score** is keyed by its SAE, the eval's settings (not its display name) and the version of
  the metric code that produced it.
So adding an eval scores existing SAEs only, and renaming an alias re-runs nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol

# Bump when what determines an SAE's weights is hashed differently.
SAE_KEY_VERSION = 2
# Bump one of these when the meaning of a stored number of that eval changes: its scores are
# recomputed on the next run, its SAEs are not retrained.
METRIC_VERSIONS = {"core": "core-2", "absorption": "absorption-2", "sparse_probing": "sparse_probing-2"}
HOOKS = ("resid_post", "mlp_out", "attn_out")
ABSORPTION_EVAL = "absorption"  # the eval name absorption scores are stored under


def digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=4096)
def _fields_of(settings: Any) -> dict[str, Any]:
    """asdict of frozen settings shared by many SAEs or scores (a grid of 100k SAEs has a few
    hundred): computed once. Callers must not mutate the dict."""
    return asdict(settings)


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
    id: str  # hub id, local path, or builtin:<name>
    revision: str | None = None
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    trust_remote_code: bool = False
    # The spec's alias, e.g. "base": a display label, never part of an identity or equality.
    name: str = field(default="", compare=False)
    gguf_file: str | None = None  # a GGUF file in `id` (a folder or hub repo), transformers' gguf_file

    def identity(self) -> dict[str, Any]:
        base = {"id": self.id, "revision": self.revision, "dtype": self.dtype}
        return base | ({"gguf_file": self.gguf_file} if self.gguf_file else {})  # older keys unchanged


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


# Settings each architecture reads besides `arch` and `latents`; only these enter an SAE's key.
# `dead_tokens` is known to every architecture (the logged dead fraction) but is part of the key
# only where it changes the weights (AuxK). suite/sae_settings.py validates specs against this.
ARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "topk": ("k", "aux_k", "aux_coef", "dead_tokens"),
    "batchtopk": ("k", "aux_k", "aux_coef", "dead_tokens", "threshold_lr"),
    "relu": ("l1_coefficient", "l1_warm_up_steps"),
    "jumprelu": ("l0_coefficient", "l0_warm_up_steps", "bandwidth", "init_threshold", "target_l0"),
    "matryoshka_batchtopk": ("k", "aux_k", "aux_coef", "dead_tokens", "threshold_lr", "matryoshka_widths"),
}


@dataclass(frozen=True)
class SaeSettings:
    """Every architecture's settings; defaults are the references' (harness/saes/<arch>.py)."""

    arch: str = "topk"
    k: int = 32  # topk, batchtopk (batchtopk: the mean over the batch)
    latents: int = 4096
    aux_k: int = 0  # 0 = d_model // 2 (sparsify's default)
    aux_coef: float = 1 / 32
    dead_tokens: int = 10_000_000  # a latent silent this many tokens counts as dead (AuxK, logs)
    threshold_lr: float = 0.01  # batchtopk: SAELens BatchTopKTrainingSAEConfig.topk_threshold_lr
    l1_coefficient: float = 1.0  # relu: SAELens StandardTrainingSAEConfig.l1_coefficient
    l1_warm_up_steps: int = 0  # relu: SAELens StandardTrainingSAEConfig.l1_warm_up_steps
    l0_coefficient: float = 1.0  # jumprelu: SAELens JumpReLUTrainingSAEConfig.l0_coefficient
    l0_warm_up_steps: int = 0  # jumprelu: SAELens JumpReLUTrainingSAEConfig.l0_warm_up_steps
    bandwidth: float = 0.05  # jumprelu: SAELens jumprelu_bandwidth
    init_threshold: float = 0.01  # jumprelu: SAELens jumprelu_init_threshold
    target_l0: float = 0.0  # jumprelu: > 0 = SAELens's "quadratic" L0 loss around this target
    # matryoshka_batchtopk: nested prefix widths (the last is latents); () = SAEBench's groups
    matryoshka_widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # read back from JSON as a list; frozen settings must stay hashable
        object.__setattr__(self, "matryoshka_widths", tuple(self.matryoshka_widths))

    def identity(self) -> dict[str, Any]:
        used = ("arch", "latents", *ARCH_FIELDS.get(self.arch, tuple(f.name for f in fields(self))))
        return {name: getattr(self, name) for name in used}


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
    # eval_config.k_sparse_probe_batch_size is 4096; 0 (ours) = chosen from the number of train
    # words so that an epoch has at least 20 optimiser steps, at most 4096 (harness.absorption.probes
    # `sparse_probe_batch`); the batch used is stored with the score (scores.eval_settings.resolved)
    sparse_probe_batch_size: int = 0
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
    """A dataset eval ([eval.NAME]): SAEBench's core metrics on its token stream.

    CE/KL use the first `tokens` tokens (whole batches of `batch_size` windows of `ctx_len`);
    sparsity, feature density and reconstruction metrics the first `sparsity_tokens`, as
    SAEBench's reconstruction and sparsity/variance batches (both read from the stream's start).
    """

    name: str
    dataset: DatasetRef
    tokens: int = 409_600  # SAEBench's recommended 200 batches x 16 prompts x 128 tokens
    sparsity_tokens: int = 4_096_000  # SAEBench's 2,000 batches: sees a latent firing once per 100k tokens
    ctx_len: int = 128
    batch_size: int = 16

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.ctx_len

    def batches(self, tokens: int) -> int:
        return max(1, -(-tokens // self.batch_tokens))


@dataclass(frozen=True)
class ProbingSettings:
    """A labelled dataset for SAEBench's sparse-probing eval ([probing.NAME]); defaults are
    SAEBench's (sae_bench/evals/sparse_probing/eval_config.py and main.py, names in the comments).

    `dataset` is the probe-training split (its `column` the text column), `test_split` the split
    the probes are tested on. Each class gets a one-vs-rest task of up to `train_size` /
    `test_size` texts, half of them the class's own."""

    name: str
    dataset: DatasetRef
    label_column: str = "label"
    test_split: str = "test"
    classes: tuple[str, ...] = ()  # () = every label of the dataset (SAEBench: chosen_classes_per_dataset)
    k: tuple[int, ...] = (1, 2, 5)  # k_values
    train_size: int = 4000  # probe_train_set_size
    test_size: int = 1000  # probe_test_set_size
    ctx_len: int = 128  # context_length
    batch_size: int = 32  # texts per model forward (llm_batch_size)
    probe_epochs: int = 100  # main.py: train_probe_on_activations(epochs=100) for the all-dimension probes
    probe_lr: float = 1e-2  # main.py: lr=1e-2
    probe_batch_size: int = 250  # main.py: batch_size=250
    probe_patience: int = 10  # probe_training.train_probe_gpu early_stopping_patience
    seed: int = 42  # random_seed


@dataclass(frozen=True)
class ScoreTask:
    """One eval to run on an SAE: a dataset eval (kind "core"), absorption or sparse probing."""

    kind: Literal["core", "absorption", "sparse_probing"]
    settings: EvalSettings | AbsorptionSettings | ProbingSettings

    @property
    def name(self) -> str:
        return ABSORPTION_EVAL if isinstance(self.settings, AbsorptionSettings) else self.settings.name

    def identity(self) -> dict[str, Any]:
        return self._identity

    @cached_property
    def _identity(self) -> dict[str, Any]:
        settings = dict(_fields_of(self.settings))
        settings.pop("name", None)  # a display label
        return {"kind": self.kind, "settings": settings, "metric_version": METRIC_VERSIONS[self.kind]}

    @cached_property
    def _identity_json(self) -> str:
        return json.dumps(self._identity, sort_keys=True, default=str)

    def key(self, sae_key: str) -> str:
        """digest({"sae": sae_key, "eval": identity}), spelled out so the eval's JSON is built
        once per task rather than once per SAE (json.dumps with sort_keys puts "eval" first)."""
        text = f'{{"eval": {self._identity_json}, "sae": {json.dumps(sae_key)}}}'
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def dataset_label(self) -> str | None:
        if isinstance(self.settings, (EvalSettings, ProbingSettings)):
            return self.settings.dataset.label()
        return None


@dataclass(frozen=True)
class ImportSource:
    """An SAE trained elsewhere: `format` is saelens | sparsify | sae-bench, `location` a local
    directory or a hub `repo[/path]`, `sha256` the digest of its files (set once resolved)."""

    format: str
    location: str
    sha256: str = ""

    def label(self) -> str:
        return f"{self.format}:{self.location}"


@dataclass(frozen=True)
class SaeRef:
    """What determines an SAE's weights, hence its key."""

    model: ModelRef
    hook: str
    layer: int
    train: TrainSettings | None = None  # trained here
    sae: SaeSettings | None = None
    source: ImportSource | None = None  # or imported

    def identity(self) -> dict[str, Any]:
        base = {"version": SAE_KEY_VERSION, "model": self.model.identity(), "hook": self.hook, "layer": self.layer}
        if self.source is not None:
            return {**base, "import": {"format": self.source.format, "sha256": self.source.sha256}}
        assert self.train is not None and self.sae is not None
        return {**base, "train": _fields_of(self.train), "sae": self.sae.identity()}

    @cached_property
    def key(self) -> str:
        return digest(self.identity())

    @property
    def sae_id(self) -> str:
        return self.key[:12]

    @property
    def trained_here(self) -> bool:
        return self.source is None

    def describe(self) -> str:
        where = f"{self.model.name or self.model.id} layer {self.layer}" + (
            f" {self.hook}" if self.hook != "resid_post" else "")
        if self.source is not None:
            return f"{where} imported {self.source.label()}"
        assert self.sae is not None and self.train is not None
        k = f" k={self.sae.k}" if "k" in ARCH_FIELDS.get(self.sae.arch, ()) else ""
        return f"{where} {self.sae.arch}{k} latents={self.sae.latents} lr={self.train.lr:g}"


@dataclass(frozen=True)
class Job:
    """One SAE for the harness: train it (or load/import it), then run the score tasks it lacks."""

    sae: SaeRef
    train: bool  # False: the weights exist (`checkpoint`) or are imported (`sae.source`)
    scores: tuple[ScoreTask, ...]
    checkpoint: str | None = None  # where existing weights are
    log_every: int = 10
    label: str = field(default="", compare=False)  # the SAE's name in the spec, for imported SAEs

    @property
    def key(self) -> str:
        return self.sae.key

    @property
    def sae_id(self) -> str:
        return self.sae.sae_id

    @property
    def model(self) -> ModelRef:
        return self.sae.model

    @property
    def layer(self) -> int:
        return self.sae.layer

    @property
    def group_key(self) -> tuple[ModelRef, TrainSettings | None]:
        """SAEs trained on the same model and stream share one forward pass."""
        return (self.sae.model, self.sae.train if self.train else None)

    def describe(self) -> str:
        return self.sae.describe()


@dataclass
class TrainLogRow:
    step: int
    tokens: int
    loss: float
    fvu: float
    l0: float
    dead_fraction: float


@dataclass
class TrainResult:
    """An SAE whose weights now exist: trained and checkpointed, or imported."""

    checkpoint_path: str
    d_model: int
    train_seconds: float | None = None
    tokens_per_second: float | None = None
    weights_sha256: str | None = None
    model_sha: str | None = None  # the model's hub commit, or a hash of its weights
    train_fingerprint: str | None = None  # sha256 of the training token stream consumed
    device_name: str | None = None
    hook_name: str | None = None  # the module read, as SAELens names HF hooks
    arch: str | None = None  # for imported SAEs: what their files say
    k: int | None = None
    latents: int | None = None
    loaded_dtype: str | None = None  # the torch dtype the model's weights were in (float32, bfloat16)
    threads: int | None = None  # torch intra-op threads of the process that ran it


@dataclass
class DensityBin:
    """Latents whose firing frequency f has log10(f) in [log10_low, log10_high); both None for
    latents that never fired."""

    log10_low: float | None
    log10_high: float | None
    latents: int


@dataclass
class LetterRow:
    letter: str
    probe_f1: float
    scored: bool
    words: int
    mean_absorption: float | None
    full_absorption: float | None
    split_features: int | None


@dataclass
class ProbeRow:
    """One probe of the sparse-probing eval: `inputs` 'llm' (model activations) or 'sae'
    (latents), `k` None for all dimensions, else the top k by class-mean difference."""

    task: str  # the [probing.NAME]
    class_name: str  # the one-vs-rest task's positive class
    inputs: str
    k: int | None
    accuracy: float
    train_texts: int
    test_texts: int


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% bootstrap, token means
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    density: list[DensityBin] = field(default_factory=list)
    letters: list[LetterRow] = field(default_factory=list)
    probes: list[ProbeRow] = field(default_factory=list)
    seconds: float = 0.0
    dataset_fingerprint: str | None = None  # sha256 of the eval token stream consumed
    device_name: str | None = None
    warning: str | None = None  # e.g. the dataset ended before the eval's budget
    resolved: dict[str, Any] = field(default_factory=dict)  # settings chosen at run time (e.g. "auto" batch sizes)
    loaded_dtype: str | None = None  # the torch dtype the model's weights were in
    threads: int | None = None  # torch intra-op threads of the process that ran it


class JobReporter(Protocol):
    """How the harness hands results back; the suite implements it with the store."""

    def sae_started(self, job: Job) -> None: ...

    def train_log(self, job: Job, rows: list[TrainLogRow]) -> None: ...

    def sae_failed(self, job: Job, error: str) -> None: ...

    def sae_ready(self, job: Job, result: TrainResult) -> None: ...

    def score_finished(self, job: Job, task: ScoreTask, result: ScoreResult) -> None: ...

    def score_failed(self, job: Job, task: ScoreTask, error: str) -> None: ...
