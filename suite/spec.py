"""Spec files: TOML parsed with tomllib, validated with pydantic before anything runs.

Every problem becomes one line `FILE: dotted.field.path: what was expected`, so a user can fix
a spec without reading a traceback. Any `[sae]` / `[train]` value given as a list is a grid axis.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from suite.catalog import GATEABLE_METRICS
from suite.sae_settings import ARCHS as SAE_ARCHS
from suite.sae_settings import problems as sae_problems
from suite.sae_settings import widths_axis
from suite.jobs import ABSORPTION_EVAL, HOOKS, EvalSettings
from suite.health import DEFAULT_THRESHOLDS, GatePolicy, Threshold
from suite.spec_probing import ProbingSection, probing_problems
from suite.validation_limits import (
    BOUND_REASONS,
    INT32_MAX,
    MAX_LATENTS,
    MAX_TOKENS,
    repeated,
    shown,
    spec_problems,
)


class SpecError(Exception):
    """A spec that cannot run; `problems` holds one human-readable line each."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def _as_axis(value: Any) -> Any:
    """A scalar is a one-value axis; a list is an axis to expand (not empty, no value twice:
    a repeated value would declare the same SAEs twice)."""
    if isinstance(value, list) and not value:
        raise ValueError("an axis needs at least one value")
    if isinstance(value, list) and (again := repeated(value)):
        raise ValueError(f"values must not repeat: {', '.join(shown(v) for v in again)} given more than once")
    return value if isinstance(value, list) else [value]


AxisValues = BeforeValidator(_as_axis)
# Upper bounds: the store's 32-bit INTEGER columns, token counts exact as floats, latents that fit
# (suite.validation_limits says why each).
PositiveInt = Annotated[int, Field(gt=0, le=INT32_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT32_MAX)]
TokenCount = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
LatentCount = Annotated[int, Field(gt=0, le=MAX_LATENTS)]
PositiveFloat = Annotated[float, Field(gt=0)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must not be empty or blank, got {value!r}: give a path or id, or leave the field out")
    return value


def _wandb_project(value: str) -> str:
    if not value.strip() or value != value.strip() or len(value) > 128 or any(c in value for c in "/\\#?%:"):
        raise ValueError(f"expected a Weights & Biases project name (1-128 characters, none of / \\ # ? % :, no "
                         f"space at either end), got {value!r}")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]  # "" or "  " is never a path or id


class _Strict(BaseModel):
    # allow_inf_nan=False: TOML's nan and inf are refused in every float field (lr, thresholds, ...)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DatasetSpec(_Strict):
    path: NonBlank
    name: str | None = None
    split: str = "train"
    column: str = "text"
    data_files: NonBlank | list[NonBlank] | None = None
    revision: str | None = None
    streaming: bool = True


class WandbSection(_Strict):
    """`[suite] wandb = { project = "...", entity = "..." }`: mirror each SAE to Weights & Biases."""

    project: Annotated[str, AfterValidator(_wandb_project)]
    entity: NonBlank | None = None


class SuiteSection(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    db: NonBlank | None = None
    checkpoints: NonBlank | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    executor: Literal["local", "ray"] = "local"  # ray: one Ray task per model group (docs/cluster.md)
    wandb: WandbSection | None = None  # suite/wandb_mirror.py
    description: str = ""


class ModelSection(_Strict):
    id: NonBlank
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    gguf_file: str | None = Field(default=None, min_length=1, pattern=r"\.gguf$")  # a GGUF file in `id`


class GridSection(_Strict):
    models: list[str] = Field(min_length=1)
    layers: list[NonNegativeInt] = Field(min_length=1)
    hook: Annotated[list[Literal[HOOKS]], AxisValues] = ["resid_post"]  # type: ignore[valid-type]

    @field_validator("layers", "models")
    @classmethod
    def _unique(cls, values: list) -> list:
        if again := repeated(values):
            raise ValueError(f"values must not repeat: {', '.join(shown(v) for v in again)} given more than once")
        return values


class TrainSection(_Strict):
    dataset: Annotated[list[DatasetSpec], AxisValues]
    tokens: Annotated[list[TokenCount], AxisValues]
    ctx_len: Annotated[list[Annotated[int, Field(ge=2, le=INT32_MAX)]], AxisValues]
    batch_size: Annotated[list[PositiveInt], AxisValues]
    lr: Annotated[list[PositiveFloat], AxisValues]
    seed: Annotated[list[NonNegativeInt], AxisValues] = [0]
    lr_warmup_steps: Annotated[list[NonNegativeInt], AxisValues] = [0]
    buffer_batches: Annotated[list[PositiveInt], AxisValues] = [4]
    log_every: PositiveInt = 10


def _optional_axis(item: Any) -> Any:
    """An [sae] key only some architectures read: absent is None (suite/sae_settings.py)."""
    return Annotated[list[item] | None, AxisValues]


class SaeSection(_Strict):
    """[sae]; which keys each `arch` reads and their defaults: suite/sae_settings.py."""

    arch: Annotated[list[Literal[SAE_ARCHS]], AxisValues] = ["topk"]  # type: ignore[valid-type]
    latents: Annotated[list[LatentCount], AxisValues]
    dead_tokens: _optional_axis(TokenCount) = None
    k: _optional_axis(PositiveInt) = None
    aux_k: _optional_axis(NonNegativeInt) = None
    aux_coef: _optional_axis(Annotated[float, Field(ge=0)]) = None
    threshold_lr: _optional_axis(Annotated[float, Field(gt=0, le=1)]) = None
    l1_coefficient: _optional_axis(Annotated[float, Field(ge=0)]) = None
    l1_warm_up_steps: _optional_axis(NonNegativeInt) = None
    l0_coefficient: _optional_axis(Annotated[float, Field(ge=0)]) = None
    l0_warm_up_steps: _optional_axis(NonNegativeInt) = None
    bandwidth: _optional_axis(PositiveFloat) = None
    init_threshold: _optional_axis(Annotated[float, Field(ge=0)]) = None
    target_l0: _optional_axis(PositiveFloat) = None
    # one list of widths is one value; a list of lists is an axis
    matryoshka_widths: Annotated[list[list[PositiveInt]] | None, BeforeValidator(widths_axis)] = None

    @model_validator(mode="after")
    def _per_architecture(self) -> "SaeSection":
        if found := sae_problems(self.model_dump()):
            raise ValueError(found[0])
        return self


class EvalSection(_Strict):
    """[eval.NAME]: SAEBench's core eval on one dataset; defaults are SAEBench's recommended run."""

    dataset: DatasetSpec
    tokens: TokenCount = EvalSettings.tokens  # CE/KL tokens (reconstruction batches)
    sparsity_tokens: TokenCount = EvalSettings.sparsity_tokens  # L0, density, variance batches
    ctx_len: Annotated[int, Field(ge=2, le=INT32_MAX)] = EvalSettings.ctx_len
    batch_size: PositiveInt = EvalSettings.batch_size


class ImportedSaeSection(_Strict):
    """[saes.NAME]: an SAE trained elsewhere, scored on the spec's evals and gates."""

    source: str = Field(pattern=r"^(saelens|sparsify|sae-bench):.+", min_length=1)
    model: str
    layer: NonNegativeInt
    hook: Literal[HOOKS] = "resid_post"  # type: ignore[valid-type]


class AbsorptionSection(_Strict):
    """[absorption]: SAEBench's first-letter absorption eval; fields and defaults as
    `suite.jobs.AbsorptionSettings` (SAEBench's), plus `enabled`."""

    enabled: bool = True
    icl_examples: PositiveInt = 10
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.8
    max_words: Annotated[int, Field(ge=0)] = 0
    words_per_context: PositiveInt = 1
    batch_size: PositiveInt = 64
    probe_batch_size: PositiveInt = 64
    probe_epochs: PositiveInt = 50
    probe_lr: PositiveFloat = 1e-2
    probe_end_lr: PositiveFloat = 1e-5
    probe_weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    sparse_probe_batch_size: NonNegativeInt = 0  # 0: chosen from the number of train words
    sparse_probe_epochs: PositiveInt = 50
    sparse_probe_l1: Annotated[float, Field(ge=0)] = 0.01
    sparse_probe_lr: PositiveFloat = 1e-2
    sparse_probe_end_lr: PositiveFloat = 1e-5
    sparse_probe_weight_decay: Annotated[float, Field(ge=0)] = 1e-6
    f1_threshold: Annotated[float, Field(ge=0, le=1)] = 0.6
    min_letters: Annotated[int, Field(ge=1, le=26)] = 20
    f1_jump: Annotated[float, Field(ge=0)] = 0.03
    max_k: Annotated[int, Field(ge=1, le=100)] = 10
    seed: NonNegativeInt = 42


class ProbingSpec(ProbingSection):
    """[probing.NAME]: a labelled dataset for sparse probing (suite.spec_probing)."""

    dataset: DatasetSpec


class Bounds(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Bounds":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min={self.min} is above max={self.max}")
        return self


# One optional `metric = { min, max }` field per gateable metric, shared by [health] and overrides.
_Thresholds = create_model(
    "_Thresholds", __base__=_Strict, **{name: (Bounds | None, None) for name in GATEABLE_METRICS}
)


def _stated_thresholds(section: BaseModel) -> dict[str, Threshold]:
    return {name: Threshold(name, b.min, b.max) for name in GATEABLE_METRICS
            if (b := getattr(section, name)) is not None}


class HealthOverride(_Thresholds):
    """Thresholds for some jobs only: those matching every selector given (none = all)."""

    models: list[str] | None = None
    layers: list[NonNegativeInt] | None = None
    evals: list[str] | None = None
    allow_fail: bool = False  # failures here are reported but do not fail `gate` / pytest (xfail)


class HealthSection(_Thresholds):
    use_defaults: bool = True
    override: list[HealthOverride] = []


class SpecModel(_Strict):
    suite: SuiteSection
    models: dict[str, ModelSection] = Field(min_length=1)
    grid: GridSection | None = None
    train: TrainSection | None = None
    sae: SaeSection | None = None
    saes: dict[str, ImportedSaeSection] = {}
    eval: dict[str, EvalSection] = Field(min_length=1)
    absorption: AbsorptionSection = AbsorptionSection()
    probing: dict[str, ProbingSpec] = {}
    health: HealthSection = HealthSection()

    @model_validator(mode="after")
    def _names_declared(self) -> "SpecModel":
        training = {"grid": self.grid, "train": self.train, "sae": self.sae}
        given = [name for name, section in training.items() if section is not None]
        if given and len(given) < 3:
            missing = next(name for name, section in training.items() if section is None)
            raise ValueError(f"@{missing}: required but missing (training SAEs needs [grid], [train] and [sae])")
        if not given and not self.saes:
            raise ValueError("@grid: required but missing: give a [grid] (with [train] and [sae]) to train SAEs, "
                             "or [saes.NAME] tables to score SAEs you already have")
        if ABSORPTION_EVAL in self.eval:
            raise ValueError(f"@eval.{ABSORPTION_EVAL}: the name is reserved for the absorption eval; "
                             "choose another name")
        if problems := probing_problems(self.probing, [*self.eval, ABSORPTION_EVAL]):
            raise ValueError(problems[0])
        unknown = [m for m in (self.grid.models if self.grid else []) if m not in self.models]
        if unknown:
            raise ValueError(
                f"@grid.models: {', '.join(map(repr, unknown))} not declared; "
                f"declared models: {', '.join(self.models)} (add a [models.NAME] table)"
            )
        for name, imported in self.saes.items():
            if imported.model not in self.models:
                raise ValueError(f"@saes.{name}.model: {imported.model!r} not declared; "
                                 f"declared models: {', '.join(self.models)}")
        for i, override in enumerate(self.health.override):
            for field, declared in (("models", self.models), ("evals", [*self.eval, ABSORPTION_EVAL, *self.probing])):
                missing = [n for n in getattr(override, field) or [] if n not in declared]
                if missing:
                    raise ValueError(f"@health.override[{i}].{field}: {', '.join(map(repr, missing))} "
                                     f"not declared; declared: {', '.join(declared)}")
        return self


class Spec:
    """A validated spec plus where it came from."""

    def __init__(self, path: Path, text: str, model: SpecModel):
        self.path = path
        self.text = text
        self.model = model

    @property
    def name(self) -> str:
        return self.model.suite.name

    def db_path(self, override: str | Path | None = None) -> Path:
        if override is not None:
            return Path(override)
        return Path(self.model.suite.db or f"results/{self.name}.duckdb")

    def checkpoint_dir(self, db_path: Path) -> Path:
        if self.model.suite.checkpoints:
            return Path(self.model.suite.checkpoints)
        return db_path.with_name(db_path.stem + "-checkpoints")

    def thresholds(self) -> tuple[Threshold, ...]:
        """The spec-wide thresholds: defaults (unless use_defaults = false) updated by [health]."""
        health = self.model.health
        chosen = {t.metric: t for t in DEFAULT_THRESHOLDS} if health.use_defaults else {}
        chosen.update(_stated_thresholds(health))
        return tuple(chosen.values())

    @property
    def trains(self) -> bool:
        return self.model.grid is not None

    @property
    def log_every(self) -> int:
        return self.model.train.log_every if self.model.train else 10

    def gate_policy(self, model: str, layer: int, eval_name: str) -> GatePolicy:
        """Thresholds for one job and eval: [health], then each matching override in order."""
        chosen = {t.metric: t for t in self.thresholds()}
        allow_fail = False
        for override in self.model.health.override:
            if ((override.models is None or model in override.models)
                    and (override.layers is None or layer in override.layers)
                    and (override.evals is None or eval_name in override.evals)):
                chosen.update(_stated_thresholds(override))
                allow_fail = allow_fail or override.allow_fail
        return GatePolicy(tuple(chosen.values()), allow_fail)


_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
}


_UNION_TAGS = {"Bounds", "bool", "str", "int", "float"}


def _field_path(loc: tuple[Any, ...], raw: Any = None) -> str:
    """pydantic's location tuple as `sae.k[1]`, dropping pydantic-internal union branch tags, and
    the index of an axis the spec gave as one value (`arch = "x"` is `sae.arch`, not `sae.arch[0]`)."""
    path = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            if node is not None and not isinstance(node, list):  # TOML has no null: None is "not known"
                continue  # a single value that AxisValues wrapped in a list
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(part, str) and ("[" in part or part in {"function-before", "function-after"}):
            continue  # union-branch names such as 'Bounds' or 'list[int]'
        elif part in _UNION_TAGS:
            continue
        else:
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, dict) else None
    return path or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    got = error.get("input")
    given = shown(got) if not isinstance(got, dict) else "a table"
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required but missing"
    if kind == "extra_forbidden":
        if error["loc"] and error["loc"][0] == "health":
            return f"unknown metric or key; gateable metrics: {', '.join(GATEABLE_METRICS)}"
        return f"unknown key (value {given}); check the spelling against the docs"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {given}"
    if kind == "greater_than":
        return f"expected a value > {ctx.get('gt')}, got {given}"
    if kind == "greater_than_equal":
        return f"expected a value >= {ctx.get('ge')}, got {given}"
    if kind == "less_than_equal":
        reason = BOUND_REASONS.get(ctx.get("le"))
        return f"expected a value <= {ctx.get('le')}" + (f" ({reason})" if reason else "") + f", got {given}"
    if kind == "less_than":
        return f"expected a value < {ctx.get('lt')}, got {given}"
    if kind == "finite_number":
        return f"expected a finite number, got {given}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {given}"
    if kind == "string_pattern_mismatch":
        if "saelens" in str(ctx.get("pattern", "")):
            return f"expected FORMAT:LOCATION with FORMAT saelens|sparsify|sae-bench, got {given}"
        return f"expected letters, digits, '_', '-' or '.', got {given}"
    if kind in ("too_short", "string_too_short"):
        return f"must not be empty, got {given}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']} (got {given})"


def _problems(error: ValidationError, raw: Any = None) -> list[str]:
    seen: dict[str, str] = {}
    for item in error.errors():
        path = _field_path(tuple(item["loc"]), raw)
        message = _describe(item)
        if message.startswith("@"):  # a validator naming the sub-field it is about
            sub, _, message = message[1:].partition(": ")
            path = sub if path == "(top level)" else f"{path}.{sub}"
        # A union (e.g. Bounds | bool) reports one error per branch: keep the first per field.
        seen.setdefault(path, f"{path}: {message}")
    return list(seen.values())


def parse_spec(text: str, path: str | Path = "<spec>") -> Spec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, [f"invalid TOML: {exc}"]) from None
    except RecursionError:
        raise SpecError(path, ["invalid TOML: arrays or tables nested too deeply"]) from None
    try:
        model = SpecModel.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(path, _problems(exc, raw)) from None
    except RecursionError:
        raise SpecError(path, ["values nested too deeply (a spec's values are numbers, strings, lists of them "
                               "and tables)"]) from None
    problems = spec_problems(model)
    if problems:
        raise SpecError(path, problems)
    return Spec(Path(path), text, model)


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if path.is_dir():
        raise SpecError(path, ["a directory, not a spec file: give a TOML file, e.g. specs/demo.toml"])
    if not path.is_file():
        raise SpecError(path, ["no such spec file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, [f"cannot read the spec: {exc}"]) from None
    return parse_spec(text, path)
