"""Spec validation through the real CLI: each malformed spec gives one clear error, exit 2,
and writes nothing; the reference study plans its 10 jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_SPEC, write_spec
from suite.cli import main
from suite.grid import expand
from suite.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]

# (what is changed, replacement, the field path the error must name, a phrase it must contain)
MALFORMED = [
    ("k = 24", "k = 200", "sae.k", "exceeds latents=96"),
    ("k = 24", 'k = "24"', "sae.k[0]", "expected an integer"),
    ("k = 24", "k = []", "sae.k", "at least one value"),
    ("lr = 1e-3", "lr = -0.1", "train.lr[0]", "expected a value > 0"),
    ("layers = [0, 1, 2]", "layers = []", "grid.layers", "must not be empty"),
    ("layers = [0, 1, 2]", "layers = [0, 0]", "grid.layers", "must not repeat"),
    ("layers = [0, 1, 2]", "layers = [0, 9]", "grid.layers", "out of range: models.base (builtin:tiny-base) has 3, 0..2"),
    ('models = ["base", "finetune"]', 'models = ["base", "fintune"]', "grid.models", "'fintune' not declared"),
    ("latents = 96", "latents = 96\nlatent = 3", "sae.latent", "unknown key"),
    ("tokens = 12_000", "", "train.tokens", "required but missing"),
    ('[eval.pylib]', '[eval.pylib]\nsplit = "x"', "eval.pylib.split", "unknown key"),
    ("ctx_len = 64", "ctx_len = 1", "train.ctx_len[0]", "expected a value >= 2"),
    ('name = "tiny"', 'name = "my suite"', "suite.name", "expected letters"),
    ("[sae]", '[sae]\narch = "relu"', "sae.arch[0]", "expected one of"),
    ("[sae]", "[health]\nl0 = { min = 300, max = 20 }\n[sae]", "health.l0", "above max"),
    ("[sae]", "[health]\nloss_recoverd = { min = 0.5 }\n[sae]", "health.loss_recoverd", "unknown metric or key"),
    ("[grid]", "[grid]\n[grid]", "invalid TOML", "line"),
]


@pytest.mark.parametrize("old,new,field,phrase", MALFORMED, ids=[m[2] + ":" + m[3][:12] for m in MALFORMED])
def test_malformed_spec_exits_2_with_one_clear_error(tmp_path, capsys, old, new, field, phrase):
    db = tmp_path / "out.duckdb"
    text = TINY_SPEC.format(db=db)
    assert old in text
    spec = write_spec(tmp_path, text.replace(old, new, 1))
    for command in ("validate", "plan", "run"):
        assert main([command, str(spec)]) == 2
        out = capsys.readouterr().out
        errors = [line for line in out.splitlines() if line.startswith("error")]
        assert len(errors) == 1, out
        assert f"{spec}: {field}" in errors[0] and phrase in errors[0], errors[0]
    assert not db.exists(), "a rejected spec must write nothing"


def test_missing_spec_file(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().out


def test_list_values_become_grid_axes(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "x.duckdb").replace("k = 24", "k = [8, 16, 24]").replace(
        "lr = 1e-3", "lr = [1e-3, 3e-4]")
    jobs = expand(load_spec(write_spec(tmp_path, text)))
    assert len(jobs) == 2 * 3 * 3 * 2
    assert len({job.key for job in jobs}) == len(jobs)
    assert {(j.sae.k, j.train.lr) for j in jobs} == {(k, lr) for k in (8, 16, 24) for lr in (1e-3, 3e-4)}


def test_job_keys_are_stable_and_settings_sensitive(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "x.duckdb")
    first = [j.key for j in expand(load_spec(write_spec(tmp_path, text, "a.toml")))]
    again = [j.key for j in expand(load_spec(write_spec(tmp_path, text, "b.toml")))]
    changed = [j.key for j in expand(load_spec(write_spec(tmp_path, text.replace("lr = 1e-3", "lr = 2e-3"), "c.toml")))]
    assert first == again
    assert not set(first) & set(changed)


def test_shipped_specs_validate(capsys):
    for name in ("demo.toml", "finance.toml"):
        assert main(["validate", str(ROOT / "specs" / name)]) == 0


def test_finance_plan_is_the_reference_study(capsys):
    spec = load_spec(ROOT / "specs" / "finance.toml")
    jobs = expand(spec)
    assert len(jobs) == 10
    assert {(j.model.id, j.layer) for j in jobs} == {
        (m, layer) for m in ("meta-llama/Llama-2-7b-hf", "cxllin/Llama2-7b-Finance") for layer in (4, 10, 16, 22, 28)}
    for job in jobs:
        assert (job.sae.arch, job.sae.k, job.sae.latents) == ("topk", 32, 400)
        assert (job.train.ctx_len, job.train.lr, job.train.batch_size) == (1024, 1e-3, 8)
        assert (job.train.dataset.path, job.train.dataset.name) == ("wikitext", "wikitext-103-raw-v1")
    assert {(e.name, e.dataset.path) for e in jobs[0].evals} == {("wikitext", "wikitext"), ("squad", "squad")}
    assert main(["plan", str(ROOT / "specs" / "finance.toml")]) == 0
    out = capsys.readouterr().out
    assert "10 job(s)" in out and out.count("meta-llama/Llama-2-7b-hf") == 5
