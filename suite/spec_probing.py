"""[probing.NAME]: a labelled dataset for SAEBench's sparse-probing eval.

    [probing.bios]
    dataset = { path = "LabHC/bias_in_bios", split = "train" }   # test_split = "test"
    text_column = "hard_text"
    label_column = "profession"
    classes = ["0", "1", "2", "6", "9"]     # SAEBench's class set 1; default: every label
    k = [1, 2, 5]

Defaults are SAEBench's (`suite.jobs.ProbingSettings`). Built-in offline datasets:
`builtin:pyref-chapters`, `builtin:pylib-areas` (harness.probing_tasks).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from suite.catalog import PROBING_K
from suite.jobs import DatasetRef, ProbingSettings
from suite.validation_limits import INT32_MAX, axis_key, repeated, shown

_DEFAULTS = ProbingSettings("", DatasetRef(""))
PositiveInt = Annotated[int, Field(gt=0, le=INT32_MAX)]


class ProbingSection(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    dataset: Any  # typed as suite.spec.DatasetSpec by suite.spec.ProbingSpec (this module cannot import it)
    text_column: str | None = Field(default=None, min_length=1)  # default: dataset.column ("text")
    label_column: str = Field(default=_DEFAULTS.label_column, min_length=1)
    test_split: str = Field(default=_DEFAULTS.test_split, min_length=1)
    classes: list[str] = []
    k: list[int] = list(_DEFAULTS.k)
    train_size: Annotated[int, Field(ge=4, le=INT32_MAX)] = _DEFAULTS.train_size
    test_size: Annotated[int, Field(ge=2, le=INT32_MAX)] = _DEFAULTS.test_size
    ctx_len: Annotated[int, Field(ge=2, le=INT32_MAX)] = _DEFAULTS.ctx_len
    batch_size: PositiveInt = _DEFAULTS.batch_size
    probe_epochs: PositiveInt = _DEFAULTS.probe_epochs
    probe_lr: Annotated[float, Field(gt=0)] = _DEFAULTS.probe_lr
    probe_batch_size: PositiveInt = _DEFAULTS.probe_batch_size
    probe_patience: PositiveInt = _DEFAULTS.probe_patience
    seed: Annotated[int, Field(ge=0, le=INT32_MAX)] = _DEFAULTS.seed

    @field_validator("k")
    @classmethod
    def _k_named(cls, k: list[int]) -> list[int]:
        if not k:
            raise ValueError("give at least one k")
        if again := repeated(k):
            raise ValueError(f"values must not repeat: {', '.join(shown(v) for v in again)} given more than once")
        unknown = [v for v in k if v not in PROBING_K]
        if unknown:
            raise ValueError(f"{', '.join(map(str, unknown))} not among SAEBench's k values "
                             f"({', '.join(map(str, PROBING_K))}), which name the stored metrics")
        return sorted(k)

    @field_validator("classes")
    @classmethod
    def _classes(cls, classes: list[str]) -> list[str]:
        if classes and len(classes) < 2:
            raise ValueError("one-vs-rest tasks need at least 2 classes (or leave classes out: every label)")
        if again := repeated(classes):
            raise ValueError(f"values must not repeat: {', '.join(shown(v) for v in again)} given more than once")
        return classes


def probing_problems(probing: dict[str, ProbingSection], reserved: list[str]) -> list[str]:
    """Names that clash with other evals (scores are listed by eval name) and datasets declared
    twice with the same settings (each SAE would be scored twice under one key)."""
    problems = [f"@probing.{name}: the name is already used by {'the absorption eval' if name == 'absorption' else f'[eval.{name}]'}; "
                "choose another name" for name in probing if name in reserved]
    same: dict[str, list[str]] = {}
    for name, section in probing.items():
        same.setdefault(axis_key(section.model_dump()), []).append(name)
    problems += [f"@probing: {', '.join(f'probing.{n}' for n in names)} have the same settings: each SAE would be "
                 "scored twice; keep one" for names in same.values() if len(names) > 1]
    return problems


def probing_settings(name: str, section: ProbingSection, dataset: DatasetRef) -> ProbingSettings:
    """The harness's settings for one [probing.NAME]; `dataset` is its `dataset` as a ref."""
    if section.text_column:
        dataset = DatasetRef(**{**dataset.__dict__, "column": section.text_column})
    values = section.model_dump(exclude={"dataset", "text_column"})
    return ProbingSettings(name, dataset, **{**values, "classes": tuple(values["classes"]), "k": tuple(values["k"])})
