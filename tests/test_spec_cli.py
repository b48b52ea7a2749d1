"""Spec validation through the real CLI: each malformed spec gives one clear error, exit 2,
and writes nothing; the reference study plans its 10 SAEs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_SPEC, write_spec
from suite.cli import main
from suite.grid import score_tasks, trained_saes
from suite.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]

# (what is changed, replacement, the field path the error must name, a phrase it must contain)
MALFORMED = [
    ("k = 24", "k = 200", "sae.k", "exceeds latents=96"),
    ("k = 24", 'k = "24"', "sae.k", "expected an integer"),
    ("k = 24", "k = []", "sae.k", "at least one value"),
    ("lr = 1e-3", "lr = -0.1", "train.lr", "expected a value > 0"),
    ("layers = [0, 1, 2]", "layers = []", "grid.layers", "must not be empty"),
    ("layers = [0, 1, 2]", "layers = [0, 0]", "grid.layers", "must not repeat"),
    ("layers = [0, 1, 2]", "layers = [0, 9]", "grid.layers", "9 out of range: models.base (builtin:tiny-base) has 3, 0..2"),
    ('models = ["base", "finetune"]', 'models = ["base", "fintune"]', "grid.models", "'fintune' not declared"),
    ("latents = 96", "latents = 96\nlatent = 3", "sae.latent", "unknown key"),
    ("tokens = 12_000", "", "train.tokens", "required but missing"),
    ('[eval.pylib]', '[eval.pylib]\nsplit = "x"', "eval.pylib.split", "unknown key"),
    ("ctx_len = 64", "ctx_len = 1", "train.ctx_len", "expected a value >= 2"),
    ('name = "tiny"', 'name = "my suite"', "suite.name", "expected letters"),
    ("[sae]", '[sae]\narch = "gated"', "sae.arch", "expected one of"),
    ("[grid]", '[eval.absorption]\ndataset = { path = "x" }\n[grid]', "eval.absorption", "reserved"),
    ("layers = [0, 1, 2]", 'layers = [0, 1, 2]\nhook = "mlp"', "grid.hook", "expected one of"),
    ("[sae]", '[saes.mine]\nsource = "other:/x"\nmodel = "base"\nlayer = 0\n[sae]', "saes.mine.source",
     "saelens|sparsify|sae-bench"),
    ("[sae]", '[saes.mine]\nsource = "sae-bench:/nonexistent"\nmodel = "bse"\nlayer = 0\n[sae]', "saes.mine.model",
     "'bse' not declared"),
    ("[sae]", "[health]\nl0 = { min = 300, max = 20 }\n[sae]", "health.l0", "above max"),
    ("[sae]", "[health]\nloss_recoverd = { min = 0.5 }\n[sae]", "health.loss_recoverd", "unknown metric or key"),
    ("[grid]", "[grid]\n[grid]", "invalid TOML", "line"),
    ("[train]", "[trainn]", "trainn", "unknown key"),
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
        "lr = 1e-3", "lr = [1e-3, 3e-4]").replace("layers = [0, 1, 2]", 'layers = [0, 1, 2]\nhook = ["resid_post", "mlp_out"]')
    saes = [d.ref for d in trained_saes(load_spec(write_spec(tmp_path, text)))]
    assert len(saes) == 2 * 3 * 2 * 3 * 2
    assert len({ref.key for ref in saes}) == len(saes)
    assert {(r.sae.k, r.train.lr, r.hook) for r in saes} == {
        (k, lr, hook) for k in (8, 16, 24) for lr in (1e-3, 3e-4) for hook in ("resid_post", "mlp_out")}


def test_sae_keys_cover_weights_only(tmp_path):
    """An SAE's key changes with what determines its weights, and with nothing else."""
    text = TINY_SPEC.format(db=tmp_path / "x.duckdb")

    def keys(changed: str, name: str) -> list[str]:
        return [d.ref.key for d in trained_saes(load_spec(write_spec(tmp_path, changed, name)))]

    first = keys(text, "a.toml")
    assert first == keys(text, "b.toml")
    assert not set(first) & set(keys(text.replace("lr = 1e-3", "lr = 2e-3"), "c.toml"))
    assert not set(first) & set(keys(text.replace("k = 24", "k = 16"), "d.toml"))
    renamed = text.replace("[models.base]", "[models.other]").replace('"base", "finetune"', '"other", "finetune"')
    assert keys(renamed, "e.toml") == first  # an alias is a label
    no_evals = text.replace("tokens = 1_536", "tokens = 3_072").replace("[eval.pylib]", "[eval.pylib2]")
    assert keys(no_evals, "f.toml") == first  # evals are scores, not SAEs
    with_absorption = text + "\n[absorption]\nmin_letters = 5\n"
    assert keys(with_absorption, "g.toml") == first


def test_score_keys_cover_eval_settings_and_not_names(tmp_path):
    text = TINY_SPEC.format(db=tmp_path / "x.duckdb")
    spec = load_spec(write_spec(tmp_path, text))
    sae = trained_saes(spec)[0].ref.key
    base = {t.name: t.key(sae) for t in score_tasks(spec)}
    renamed = {t.name: t.key(sae) for t in score_tasks(load_spec(write_spec(
        tmp_path, text.replace("[eval.pylib]", "[eval.library]"), "b.toml")))}
    assert renamed["library"] == base["pylib"]
    more_tokens = {t.name: t.key(sae) for t in score_tasks(load_spec(write_spec(
        tmp_path, text.replace("sparsity_tokens = 4_096", "sparsity_tokens = 8_192", 1), "c.toml")))}
    assert more_tokens["pyref"] != base["pyref"] and more_tokens["pylib"] == base["pylib"]


def test_shipped_specs_validate(capsys):
    for name in ("demo.toml", "finance.toml"):
        assert main(["validate", str(ROOT / "specs" / name)]) == 0


def test_finance_plan_is_the_reference_study(capsys):
    spec = load_spec(ROOT / "specs" / "finance.toml")
    saes = [d.ref for d in trained_saes(spec)]
    assert len(saes) == 10
    assert {(r.model.id, r.layer) for r in saes} == {
        (m, layer) for m in ("meta-llama/Llama-2-7b-hf", "cxllin/Llama2-7b-Finance") for layer in (4, 10, 16, 22, 28)}
    for ref in saes:
        assert (ref.sae.arch, ref.sae.k, ref.sae.latents, ref.hook) == ("topk", 32, 400, "resid_post")
        assert (ref.train.ctx_len, ref.train.lr, ref.train.batch_size) == (1024, 1e-3, 8)
        assert (ref.train.dataset.path, ref.train.dataset.name) == ("wikitext", "wikitext-103-raw-v1")
    assert {(t.name, t.dataset_label) for t in score_tasks(spec)} == {
        ("wikitext", "wikitext:wikitext-103-raw-v1:test"), ("squad", "squad:validation"), ("absorption", None),
        ("bias_in_bios_set1", "LabHC/bias_in_bios:train"), ("ag_news", "fancyzhx/ag_news:train")}
    assert main(["plan", str(ROOT / "specs" / "finance.toml")]) == 0
    out = capsys.readouterr().out
    assert "10 SAE(s)" in out and out.count("meta-llama/Llama-2-7b-hf") == 5 and "10 to train" in out
