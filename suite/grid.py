"""Grid expansion: a validated spec becomes the SAEs it declares (trained or imported) and the
score tasks every SAE gets, in a stable order."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

from suite.jobs import (
    AbsorptionSettings,
    DatasetRef,
    EvalSettings,
    ImportSource,
    ModelRef,
    SaeRef,
    ScoreTask,
    TrainSettings,
)
from suite import sae_settings
from suite.spec import DatasetSpec, Spec
from suite.spec_probing import probing_settings


def dataset_ref(spec: DatasetSpec) -> DatasetRef:
    files = spec.data_files
    return DatasetRef(
        path=spec.path,
        split=spec.split,
        column=spec.column,
        name=spec.name,
        data_files=(files,) if isinstance(files, str) else (tuple(files) if files else None),
        revision=spec.revision,
        streaming=spec.streaming,
    )


def _product(section: object, target: type) -> list:
    """Cartesian product over every list-valued field of a spec section, as `target` objects."""
    names = [f.name for f in fields(target)]
    axes = [getattr(section, name) for name in names]
    return [target(**dict(zip(names, combo))) for combo in itertools.product(*axes)]


@dataclass(frozen=True)
class _TrainAxes:
    """The spec's [train] axes with datasets already turned into refs."""

    dataset: list[DatasetRef]
    tokens: list[int]
    ctx_len: list[int]
    batch_size: list[int]
    lr: list[float]
    seed: list[int]
    lr_warmup_steps: list[int]
    buffer_batches: list[int]


def model_refs(spec: Spec) -> dict[str, ModelRef]:
    return {name: ModelRef(s.id, s.revision, s.dtype, s.trust_remote_code, name=name, gguf_file=s.gguf_file)
            for name, s in spec.model.models.items()}


@dataclass(frozen=True)
class DeclaredSae:
    """An SAE of the spec: its identity (an import's digest still unresolved) and its name."""

    ref: SaeRef
    label: str = ""  # [saes.NAME] for imports


def trained_saes(spec: Spec) -> list[DeclaredSae]:
    """The grid: model, then training stream, then hook point, then layer, then SAE settings."""
    m = spec.model
    if m.grid is None or m.train is None or m.sae is None:
        return []
    train_axes = _TrainAxes(
        dataset=[dataset_ref(d) for d in m.train.dataset],
        **{f.name: getattr(m.train, f.name) for f in fields(_TrainAxes) if f.name != "dataset"},
    )
    trains = _product(train_axes, TrainSettings)
    saes = sae_settings.expand(m.sae.model_dump())
    models = model_refs(spec)
    return [DeclaredSae(SaeRef(models[name], hook, layer, train=train, sae=sae))
            for name in m.grid.models
            for train, hook, layer, sae in itertools.product(trains, m.grid.hook, m.grid.layers, saes)]


def imported_saes(spec: Spec) -> list[DeclaredSae]:
    models = model_refs(spec)
    declared = []
    for name, section in spec.model.saes.items():
        fmt, _, location = section.source.partition(":")
        declared.append(DeclaredSae(SaeRef(models[section.model], section.hook, section.layer,
                                           source=ImportSource(fmt, location)), label=name))
    return declared


def absorption_settings(spec: Spec) -> AbsorptionSettings | None:
    values = spec.model.absorption.model_dump()
    return AbsorptionSettings(**{k: v for k, v in values.items() if k != "enabled"}) if values["enabled"] else None


def score_tasks(spec: Spec) -> tuple[ScoreTask, ...]:
    """Every eval each SAE is scored on: the dataset evals in spec order, absorption, the labelled
    probing datasets in spec order."""
    tasks = [ScoreTask("core", EvalSettings(name, dataset_ref(s.dataset), s.tokens, s.sparsity_tokens, s.ctx_len,
                                            s.batch_size))
             for name, s in spec.model.eval.items()]
    absorption = absorption_settings(spec)
    if absorption is not None:
        tasks.append(ScoreTask("absorption", absorption))
    tasks += [ScoreTask("sparse_probing", probing_settings(name, s, dataset_ref(s.dataset)))
              for name, s in spec.model.probing.items()]
    return tuple(tasks)
