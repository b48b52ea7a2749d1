"""Grid expansion: a validated spec becomes the list of jobs (one SAE each), keyed by settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

from suite.jobs import AbsorptionSettings, DatasetRef, EvalSettings, Job, ModelRef, SaeSettings, TrainSettings
from suite.spec import DatasetSpec, Spec


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


def expand(spec: Spec) -> list[Job]:
    """All jobs of the spec in a stable order: model, then training stream, then layer, then SAE."""
    m = spec.model
    train_axes = _TrainAxes(
        dataset=[dataset_ref(d) for d in m.train.dataset],
        **{f.name: getattr(m.train, f.name) for f in fields(_TrainAxes) if f.name != "dataset"},
    )
    trains = _product(train_axes, TrainSettings)
    saes = _product(m.sae, SaeSettings)
    evals = tuple(
        EvalSettings(name, dataset_ref(section.dataset), section.tokens) for name, section in m.eval.items()
    )
    section_values = m.absorption.model_dump()
    absorption = AbsorptionSettings(**{k: v for k, v in section_values.items() if k != "enabled"}) \
        if section_values.pop("enabled") else None
    jobs = []
    for model_name in m.grid.models:
        section = m.models[model_name]
        model = ModelRef(model_name, section.id, section.revision, section.dtype, section.trust_remote_code)
        for train, layer, sae in itertools.product(trains, m.grid.layers, saes):
            jobs.append(Job(model, layer, train, sae, evals, m.train.log_every, absorption).with_key())
    return jobs


def groups(jobs: list[Job]) -> dict[tuple[ModelRef, TrainSettings], list[Job]]:
    """Jobs that share a model and training stream, trained together from one forward pass."""
    grouped: dict[tuple[ModelRef, TrainSettings], list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.group_key, []).append(job)
    return grouped
