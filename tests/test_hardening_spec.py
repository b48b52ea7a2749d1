"""Values that used to pass `validate` and crash later (or train one SAE twice) are refused at
validate, one line per problem with the field path and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from hardening_fixtures import mini_spec
from suite.cli import main
from suite.validation_limits import MAX_SAES

EVAL = """
[eval.again]
dataset = { path = "builtin:pyref", split = "test" }
tokens = 512
sparsity_tokens = 512
ctx_len = 64
batch_size = 8
"""
DEEP = "\n[health]\nl0 = { min = " + "[" * 5000 + "]" * 5000 + " }\n"

# (what, replace this, with this, expected in the output)
CASES = [
    ("nan lr", "lr = 1e-3", "lr = nan", "train.lr: expected a finite number, got nan"),
    ("inf lr", "lr = 1e-3", "lr = inf", "train.lr: expected a finite number, got inf"),
    ("inf lr in a list", "lr = 1e-3", "lr = [1e-3, inf]", "train.lr[1]: expected a finite number, got inf"),
    ("negative lr", "lr = 1e-3", "lr = -1.0", "train.lr: expected a value > 0"),
    ("nan aux_coef", "latents = 64", "latents = 64\naux_coef = nan", "sae.aux_coef: expected a finite number"),
    ("nan threshold", "", "[health]\nloss_recovered = { min = nan }", "health.loss_recovered.min: expected a finite"),
    ("inf threshold", "", "[health]\nl0 = { max = inf }", "health.l0.max: expected a finite number, got inf"),
    ("-inf override", "", "[[health.override]]\nlayers = [0]\ndead_fraction = { max = -inf }",
     "health.override[0].dead_fraction.max: expected a finite number"),
    ("min above max", "", "[health]\nl0 = { min = 300, max = 20 }", "health.l0: min=300.0 is above max=20.0"),
    ("inf absorption lr", "enabled = false", "enabled = true\nprobe_lr = inf", "absorption.probe_lr: expected a finite"),
    ("latents beyond memory", "latents = 64", "latents = 99999999", "sae.latents: expected a value <= 16777216"),
    ("latents beyond int64", "latents = 64", "latents = 99999999999999999999999", "sae.latents: expected a value <="),
    ("k beyond its column", "k = 8", "k = 2147483648", "sae.k: expected a value <= 2147483647 (the results store"),
    ("seed beyond its column", "lr = 1e-3", "lr = 1e-3\nseed = 4294967296", "train.seed: expected a value <= 2147483647"),
    ("tokens beyond 2^53", "tokens = 1024", "tokens = 9223372036854775807", "train.tokens: expected a value <= 9007199254740992"),
    ("eval tokens beyond 2^53", "tokens = 512", "tokens = 99999999999999999999", "eval.pyref.tokens: expected a value <="),
    ("dead_tokens negative", "latents = 64", "latents = 64\ndead_tokens = -1", "sae.dead_tokens: expected a value > 0"),
    ("log_every beyond int32", "log_every = 5", "log_every = 4294967296", "train.log_every: expected a value <= 2147483647"),
    ("ctx_len above positions", "ctx_len = 64\nbatch_size = 4", "ctx_len = 4096\nbatch_size = 4",
     "train.ctx_len: 4096 tokens per window is more than the model's positions: models.base (builtin:tiny-base) has 1024"),
    ("eval ctx_len above positions", "ctx_len = 64\nbatch_size = 8", "ctx_len = 5000\nbatch_size = 8",
     "eval.pyref.ctx_len: 5000 tokens per window is more than the model's positions"),
    ("batch x ctx cannot fit", "batch_size = 4", "batch_size = 2000000", "train: a training stream needs about"),
    ("buffer cannot fit", "log_every = 5", "log_every = 5\nbuffer_batches = 2000000000", "train: a training stream needs"),
    ("repeated layer", "layers = [0]", "layers = [0, 1, 0]", "grid.layers: values must not repeat: 0 given more than once"),
    ("repeated model", 'models = ["base"]', 'models = ["base", "base"]', "grid.models: values must not repeat: 'base'"),
    ("repeated k", "k = 8", "k = [8, 4, 8]", "sae.k: values must not repeat: 8 given more than once"),
    ("repeated lr, two spellings", "lr = 1e-3", "lr = [1e-3, 0.001]", "train.lr: values must not repeat: 0.001"),
    ("repeated dataset", 'dataset = { path = "builtin:pyref", split = "train" }',
     'dataset = [{ path = "builtin:pyref" }, { split = "train", path = "builtin:pyref" }]', "train.dataset: values must not repeat"),
    ("same model twice", '[grid]', '[models.copy]\nid = "builtin:tiny-base"\n[grid]',
     "models: models.base, models.copy are the same model (id, revision, dtype)"),
    ("same eval twice", "", EVAL, "eval: eval.pyref, eval.again have the same settings"),
    ("unknown built-in model", 'id = "builtin:tiny-base"', 'id = "builtin:tiny-bsae"',
     "models.base.id: unknown built-in model 'builtin:tiny-bsae'; built-in models: builtin:demo-base"),
    ("unknown built-in dataset", 'path = "builtin:pyref", split = "train"', 'path = "builtin:pyrf", split = "train"',
     "train.dataset.path: unknown built-in dataset 'builtin:pyrf'; built-in datasets: builtin:pyref, builtin:pylib"),
    ("deeply nested array", "", DEEP, "invalid TOML: arrays or tables nested too deeply"),
    ("nested 200 deep", "layers = [0]", "layers = " + "[" * 200 + "0" + "]" * 200, "grid.layers[0]: expected an integer"),
    ("grid above the limit", "k = 8\nlatents = 64", "k = [" + ", ".join(map(str, range(1, 51))) + "]\nlatents = ["
     + ", ".join(map(str, range(64, 64 + 2001))) + "]", f"declares 100,050 SAEs; the limit is {MAX_SAES:,} per spec"),
]


@pytest.mark.parametrize("what, old, new, expected", CASES, ids=[c[0] for c in CASES])
def test_refused_at_validate_with_the_field_path(tmp_path, capsys, what, old, new, expected):
    spec = mini_spec(tmp_path)
    text = spec.read_text()
    assert old in text, what
    spec.write_text(text.replace(old, new, 1) if old else text + "\n" + new + "\n")
    assert main(["validate", str(spec)]) == 2
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines and all(line.startswith(f"error {spec}: ") for line in lines), out
    assert expected in out and "Traceback" not in out
    assert all(len(line) < 600 for line in lines)  # huge or deeply nested values are quoted short
    assert not (tmp_path / "mini.duckdb").exists()


def test_a_valid_mini_spec_passes(tmp_path, capsys):
    assert main(["validate", str(mini_spec(tmp_path))]) == 0
    assert "1 SAE(s)" in capsys.readouterr().out


def test_the_grid_limit_counts_without_expanding(tmp_path, capsys):
    """Exactly at the limit is accepted by the counting check (expansion itself is timed in
    benchmarks/grid_scale.py); one more axis value is refused before any SAE is built."""
    from suite.spec import load_spec
    from suite.validation_limits import grid_size

    spec = mini_spec(tmp_path, layers="[0, 1]", latents="[" + ", ".join(map(str, range(64, 64 + 50_000))) + "]")
    assert grid_size(load_spec(spec).model) == MAX_SAES
    spec = mini_spec(tmp_path, layers="[0, 1]", latents="[" + ", ".join(map(str, range(64, 64 + 50_001))) + "]")
    assert main(["plan", str(spec)]) == 2
    assert "declares 100,002 SAEs" in capsys.readouterr().out
