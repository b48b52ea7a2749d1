"""Checks of a spec against its models' shapes, read offline before anything runs.

Layers beyond a model's depth, windows longer than its positions, unknown built-in models and
datasets, and training streams whose SAEs cannot fit in memory (`suite.validation_limits`) are
refused at `validate` with the field path. Only configs are read (built-in recipes, local or
cached config.json); a hub model not in the local cache is checked when the run loads it.
"""

from __future__ import annotations

from suite.grid import DeclaredSae, model_refs
from suite.spec import Spec
from suite.validation_limits import MAX_TRAINING_GIB, gib, training_bytes


def _builtin_problems(spec: Spec) -> list[str]:
    from harness import builtin

    from harness import gguf

    problems = []
    for name, model in spec.model.models.items():
        if gguf.is_builtin_gguf(model.id):
            if problem := gguf.builtin_problem(model.id):  # its package is missing: the install command
                problems.append(f"models.{name}.id: {problem}")
        elif builtin.is_builtin(model.id) and model.id.removeprefix(builtin.PREFIX) not in builtin.BUILTIN_MODELS:
            problems.append(f"models.{name}.id: unknown built-in model {model.id!r}; built-in models: "
                            + ", ".join(builtin.PREFIX + n for n in builtin.model_names()))
    datasets = [(f"eval.{name}.dataset.path", e.dataset.path) for name, e in spec.model.eval.items()]
    if spec.model.train is not None:
        datasets += [(f"train.dataset[{i}].path" if len(spec.model.train.dataset) > 1 else "train.dataset.path",
                      d.path) for i, d in enumerate(spec.model.train.dataset)]
    for where, path in datasets:
        if builtin.is_builtin(path) and path.removeprefix(builtin.PREFIX) not in builtin.DOMAINS:
            problems.append(f"{where}: unknown built-in dataset {path!r}; built-in datasets: "
                            + ", ".join(builtin.PREFIX + d for d in builtin.DOMAINS))
    return problems


def model_problems(spec: Spec, declared: list[DeclaredSae]) -> list[str]:
    from harness.models import model_shape  # the harness is imported lazily: configs only

    problems = _builtin_problems(spec)
    if problems:
        return problems
    shapes = {name: model_shape(ref) for name, ref in model_refs(spec).items()}
    too_deep: dict[str, tuple[set[int], set[str]]] = {}  # field -> (layers, "models.X (id) has N, 0..N-1")
    streams: dict[tuple, list[DeclaredSae]] = {}
    for item in declared:
        model = item.ref.model
        shape = shapes.get(model.name)
        depth = shape.layers if shape is not None else None
        if depth is not None and item.ref.layer >= depth:
            where = f"saes.{item.label}.layer" if item.label else "grid.layers"
            layers, models = too_deep.setdefault(where, (set(), set()))
            layers.add(item.ref.layer)
            models.add(f"models.{model.name} ({model.id}) has {depth}, 0..{depth - 1}")
        if item.ref.train is not None:
            streams.setdefault((model.name, item.ref.train), []).append(item)
    problems += [f"{where}: {', '.join(map(str, sorted(layers)))} out of range: {'; '.join(sorted(models))}"
                 for where, (layers, models) in sorted(too_deep.items())]
    problems += _position_problems(spec, shapes)
    problems += _memory_problems(streams, shapes)
    return problems


def _position_problems(spec: Spec, shapes: dict) -> list[str]:
    used = set(spec.model.grid.models) if spec.model.grid else set()
    used |= {s.model for s in spec.model.saes.values()}
    windows = [(f"eval.{name}.ctx_len", e.ctx_len, used) for name, e in spec.model.eval.items()]
    if spec.model.train is not None and spec.model.grid is not None:
        windows += [("train.ctx_len", n, set(spec.model.grid.models)) for n in spec.model.train.ctx_len]
    problems = []
    for where, ctx_len, models in windows:
        short = sorted(f"models.{m} ({spec.model.models[m].id}) has {shapes[m].positions}" for m in models
                       if shapes.get(m) is not None and shapes[m].positions and ctx_len > shapes[m].positions)
        if short:
            problems.append(f"{where}: {ctx_len} tokens per window is more than the model's positions: "
                            f"{'; '.join(short)}")
    return problems


def _memory_problems(streams: dict[tuple, list[DeclaredSae]], shapes: dict) -> list[str]:
    worst: tuple[int, str] | None = None
    for (model, train), items in streams.items():
        shape = shapes.get(model)
        sites = len({(i.ref.layer, i.ref.hook) for i in items})
        need = training_bytes(shape.d_model if shape else None, train.batch_tokens, train.buffer_batches, sites,
                              [i.ref.sae.latents for i in items if i.ref.sae is not None])
        if need > MAX_TRAINING_GIB * 2**30 and (worst is None or need > worst[0]):
            worst = (need, f"models.{model} with batch_size={train.batch_size}, ctx_len={train.ctx_len}, "
                           f"buffer_batches={train.buffer_batches}, lr={train.lr:g}, seed={train.seed}: {len(items)} "
                           f"SAE(s) on {sites} site(s)")
    if worst is None:
        return []
    return [f"train: a training stream needs about {gib(worst[0])} for its SAEs alone ({worst[1]}), more than the "
            f"{gib(MAX_TRAINING_GIB * 2**30)} limit (SAE_BENCH_MAX_TRAINING_GIB): lower batch_size x ctx_len, "
            f"buffer_batches or latents, or split the grid's layers or SAE settings into several specs"]
