"""[sae] per architecture: keys refused with their field path where no architecture of the `arch`
axis reads them, required ones asked for, and the grid expanded per architecture over its own keys."""

from __future__ import annotations

import pytest

from suite.grid import trained_saes
from suite.jobs import ARCH_FIELDS, SaeSettings
from suite.spec import SpecError, parse_spec

BASE = """
[suite]
name = "t"
[models.m]
id = "builtin:demo-base"
[grid]
models = ["m"]
layers = [3]
[train]
dataset = { path = "builtin:pyref" }
tokens = 1000
ctx_len = 16
batch_size = 2
lr = 1e-3
[eval.e]
dataset = { path = "builtin:pyref" }
[sae]
"""


def settings_of(sae: str) -> list[SaeSettings]:
    return [declared.ref.sae for declared in trained_saes(parse_spec(BASE + sae))]


def problem_of(sae: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(BASE + sae)
    assert len(err.value.problems) == 1
    return err.value.problems[0]


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_latents_alone_declare_an_sae_with_the_reference_defaults(arch):
    (settings,) = settings_of(f'arch = "{arch}"\nlatents = 64')
    assert settings == SaeSettings(arch=arch, latents=64)
    assert set(settings.identity()) == {"arch", "latents", *ARCH_FIELDS[arch]}


@pytest.mark.parametrize(("sae", "path", "words"), [
    ('arch = "relu"\nlatents = 64\nk = 4', "sae.k", "not a setting of arch relu (only topk, batchtopk, matryoshka_batchtopk read it)"),
    ('arch = "topk"\nlatents = 64\nk = 4\nl1_coefficient = 2.0', "sae.l1_coefficient", "only relu reads it"),
    ('arch = "jumprelu"\nlatents = 64\naux_k = 8', "sae.aux_k", "only topk, batchtopk, matryoshka_batchtopk read it"),
    ('arch = "batchtopk"\nlatents = 64', "sae.k", "required for arch 'batchtopk'"),
    ('arch = ["relu", "topk"]\nlatents = 64', "sae.k", "required for arch 'topk'"),
    ('arch = "batchtopk"\nlatents = 64\nk = 80', "sae.k", "exceeds latents=64"),
    ('arch = "jumprelu"\nlatents = 64\ntarget_l0 = 65.0', "sae.target_l0", "exceeds latents=64"),
    ('arch = "jumprelu"\nlatents = 64\nbandwidth = 0.0', "sae.bandwidth", "expected a value > 0"),
    ('arch = "relu"\nlatents = 64\nl1_coefficient = -1.0', "sae.l1_coefficient", "expected a value >= 0"),
    ('arch = "batchtopk"\nlatents = 64\nk = 4\nthreshold_lr = 2.0', "sae.threshold_lr", "expected a value <= 1"),
    ('arch = "relu"\nlatents = 64\nl1_penalty = 1.0', "sae.l1_penalty", "unknown key"),
    ('arch = "matryoshka_batchtopk"\nlatents = 64\nk = 4\nmatryoshka_widths = [32, 8]', "sae.matryoshka_widths",
     "[32, 8] must be strictly increasing"),
    ('arch = "matryoshka_batchtopk"\nlatents = 64\nk = 4\nmatryoshka_widths = [8, 128]', "sae.matryoshka_widths",
     "128 exceeds latents=64"),
    ('arch = "topk"\nlatents = 64\nk = 4\nmatryoshka_widths = [8, 64]', "sae.matryoshka_widths",
     "only matryoshka_batchtopk reads it"),
    ('arch = "gated"\nlatents = 64', "sae.arch", "expected one of 'topk', 'batchtopk', 'relu', 'jumprelu' or"),
])
def test_a_key_no_architecture_reads_is_refused_with_its_path(sae, path, words):
    problem = problem_of(sae)
    assert problem.startswith(f"{path}: ") and words in problem


def test_the_grid_multiplies_each_architecture_by_its_own_keys_only():
    saes = settings_of('arch = ["topk", "relu", "jumprelu"]\nlatents = 64\nk = [8, 16]\n'
                       'l1_coefficient = [1.0, 5.0]\ndead_tokens = 5000')
    by_arch = {arch: [s for s in saes if s.arch == arch] for arch in ("topk", "relu", "jumprelu")}
    assert [s.k for s in by_arch["topk"]] == [8, 16]
    assert [s.l1_coefficient for s in by_arch["relu"]] == [1.0, 5.0]
    assert len(by_arch["jumprelu"]) == 1 and by_arch["jumprelu"][0] == SaeSettings(
        arch="jumprelu", latents=64, dead_tokens=5000)
    assert all(s.dead_tokens == 5000 for s in saes)
    assert len({s.identity().__repr__() for s in saes}) == len(saes) == 5


def test_topk_keys_are_unchanged_by_the_new_architectures():
    """A TopK SAE's key must not move (stored results are found by it)."""
    (settings,) = settings_of("latents = 64\nk = 8")
    assert settings.identity() == {"arch": "topk", "latents": 64, "k": 8, "aux_k": 0, "aux_coef": 1 / 32,
                                   "dead_tokens": 10_000_000}


def test_matryoshka_widths_one_list_is_one_value_a_list_of_lists_an_axis():
    (one,) = settings_of('arch = "matryoshka_batchtopk"\nlatents = 64\nk = 4\nmatryoshka_widths = [8, 32, 64]')
    assert one.matryoshka_widths == (8, 32, 64) and hash(one)
    two = settings_of('arch = "matryoshka_batchtopk"\nlatents = 64\nk = 4\nmatryoshka_widths = [[8, 64], [16, 64]]')
    assert [s.matryoshka_widths for s in two] == [(8, 64), (16, 64)]
