"""Every trained architecture through export and back: `sae-bench run` trains BatchTopK, ReLU and
JumpReLU SAEs on the tiny model, `export --format saelens` writes them with the metadata SAELens 6
and SAEBench's drivers read, a second spec imports the exported folders and scores them, and every
metric equals the original's. sparsify cannot express them: that export is refused per SAE, naming
the format to use."""

from __future__ import annotations

import json

import pytest

from conftest import write_spec
from harness.formats import import_sae
from harness.checkpoint import load_sae
from suite.catalog import CORE_METRICS
from suite.jobs import ImportSource
from test_formats import EVALS, cli, import_spec, metric_table, rows

ARCHS = ("batchtopk", "relu", "jumprelu", "matryoshka_batchtopk")
SPEC = """
[suite]
name = "archs"
db = "{db}"

[models.base]
id = "builtin:tiny-base"

[grid]
models = ["base"]
layers = [1]

[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = 12_000
ctx_len = 64
batch_size = 2
lr = 1e-3

[sae]
arch = ["batchtopk", "relu", "jumprelu", "matryoshka_batchtopk"]
k = 24
latents = 96
dead_tokens = 4_000
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("archs")
    db = directory / "archs.duckdb"
    code, out = cli("run", str(write_spec(directory, SPEC.format(db=db) + EVALS.format(more=""))))
    assert code == 0, out
    return directory, db


def test_export_import_round_trip_gives_equal_metrics(trained):
    directory, db = trained
    ids = dict(rows(db, "select arch, sae_id from saes"))
    assert set(ids) == set(ARCHS)
    code, out = cli("export", str(db), str(directory / "lens"), "--format", "saelens")
    assert code == 0, out
    for arch, sae_id in ids.items():
        config = json.loads((directory / "lens" / sae_id / "cfg.json").read_text())
        # BatchTopK infers as SAELens's jumprelu with its one threshold on every latent
        assert config["architecture"] == {"relu": "standard"}.get(arch, "jumprelu")
        meta = config["metadata"]
        assert (meta["hook_name"], meta["model_name"], meta["context_size"], meta["prepend_bos"],
                meta["dataset_path"]) == ("model.layers.1", "builtin:tiny-base", 64, True, "builtin:pyref")
        checkpoint = rows(db, "select checkpoint_path from saes where sae_id = ?", [sae_id])[0][0]
        ours = load_sae(checkpoint)
        assert ours.arch == arch
        if arch in ("batchtopk", "matryoshka_batchtopk"):
            assert float(ours.threshold) > 0  # estimated in training, kept in the checkpoint
            imported, _ = import_sae(ImportSource("saelens", str(directory / "lens" / sae_id)))
            assert (imported.threshold == ours.threshold).all()

    imported_db = directory / "imported.duckdb"
    spec = write_spec(directory, import_spec(imported_db, {
        arch: (f"saelens:{directory / 'lens' / sae_id}", 1) for arch, sae_id in ids.items()}), "imports.toml")
    code, out = cli("run", str(spec))
    assert code == 0, out
    before = metric_table(db, {arch: sae_id for arch, sae_id in ids.items()})
    after = metric_table(imported_db, {arch: arch for arch in ids})
    for arch in ARCHS:
        assert len(before[arch]) == len(CORE_METRICS) and set(after[arch]) == set(before[arch])
        for metric, value in before[arch].items():
            assert after[arch][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (arch, metric)


def test_sparsify_export_is_refused_per_sae_naming_saelens(trained):
    directory, db = trained
    code, out = cli("export", str(db), str(directory / "coder"), "--format", "sparsify")
    assert code == 1
    for arch in ARCHS:
        assert f"is {arch} (use --format saelens)" in out
    assert "sparsify holds TopK SAEs only" in out
