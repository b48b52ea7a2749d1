"""Import and export in SAELens and sparsify layouts.

tests/data/formats/ holds directories written by the real packages (scripts/make_format_fixtures.py:
sae-lens 6.54.12 and 5.11.0, eai-sparsify 1.3.3) from known weights, with what each package computes
on a fixed input. Our importers are checked against those outputs; the same weights in SAELens,
sparsify and our own layout score the same on a real model; exported SAEs re-import and score as
the SAEs they came from; and what we cannot score is refused at validate with one line each.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from conftest import write_spec
from harness.checkpoint import load_sae, save_sae
from harness.formats import FormatError, import_sae, saelens, sparsify
from harness.formats.hooks import UnsupportedHook, site_of, sparsify_hookpoint
from harness.saes import TopKSae
from suite.catalog import CORE_METRICS
from suite.cli import build_parser
from suite.jobs import DatasetRef, ImportSource, Job, ModelRef, SaeRef, SaeSettings, TrainSettings

DATA = Path(__file__).parent / "data" / "formats"

EVALS = """
[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 1_536
sparsity_tokens = 4_096
ctx_len = 64
batch_size = 8
{more}
[absorption]
enabled = false
"""
PYLIB = """[eval.pylib]
dataset = { path = "builtin:pylib", split = "test" }
tokens = 1_536
sparsity_tokens = 4_096
ctx_len = 64
batch_size = 8
"""


def cli(*argv: str) -> tuple[int, str]:
    console = Console(record=True, width=200)
    args = build_parser().parse_args(list(argv))
    code = args.func(args, console)
    return code, console.export_text()


def rows(db: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def import_spec(db: Path, saes: dict[str, tuple[str, int]], more_evals: str = "") -> str:
    tables = "".join(f'[saes.{name}]\nsource = "{source}"\nmodel = "base"\nlayer = {layer}\n\n'
                     for name, (source, layer) in saes.items())
    return (f'[suite]\nname = "imports"\ndb = "{db}"\n\n[models.base]\nid = "builtin:tiny-base"\n\n{tables}'
            + EVALS.format(more=more_evals))


def metric_table(db: Path, labels: dict[str, str]) -> dict[str, dict[tuple[str, str], float]]:
    """label -> {(eval, metric): value} over current scores, for the SAEs whose sae_id or label is given."""
    found = {}
    for name, key in labels.items():
        found[name] = {(e, m): v for e, m, v in rows(
            db, "select c.eval_name, m.metric, m.value from current_scores c join saes a using (sae_id) "
                "join metrics m using (score_id) where a.label = ? or a.sae_id = ?", [key, key])}
    return found


# ---------------------------------------------------------------- the packages' own numbers


def by_hand(arch: str, tensors: dict[str, torch.Tensor], x: torch.Tensor, k: int | None):
    """SAELens's inference formulas (sae_lens/saes/{topk,standard,jumprelu}_sae.py), written out."""
    pre = (x - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]
    if arch == "relu":
        z = torch.relu(pre)
    elif arch == "jumprelu":
        z = torch.relu(pre) * (pre > tensors["threshold"])
    else:
        values, indices = pre.topk(k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
    return z, z @ tensors["W_dec"] + tensors["b_dec"]


FIXTURES = ["saelens-topk", "saelens-topk-folded", "saelens-standard", "saelens-jumprelu",
            "saelens-batchtopk-training", "saelens-matryoshka-training", "saelens-gated", "saelens5-topk",
            "sparsify-run/layers.1"]


@pytest.mark.parametrize("name", FIXTURES)
def test_imported_tensors_compute_what_the_package_computes(name):
    directory = DATA / name
    reference = load_file(directory / "reference.safetensors")
    if name.startswith("sparsify"):
        info = sparsify.read_info(directory)
        tensors = sparsify.load_tensors(directory)
    else:
        info, config = saelens.read_info(directory)
        tensors = saelens.load_tensors(directory, info, config)
    latents, reconstruction = by_hand(info.arch, tensors, reference["x"], info.k)
    assert (reference["latents"] != 0).sum() > 0  # the input activates latents: the comparison means something
    torch.testing.assert_close(latents, reference["latents"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reconstruction, reference["reconstruction"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FIXTURES)
def test_import_builds_our_sae_computing_what_the_package_computes(name):
    fmt = "sparsify" if name.startswith("sparsify") else "saelens"
    sae, _ = import_sae(ImportSource(fmt, str(DATA / name)))
    assert sae.arch == _our_arch(name)
    reference = load_file(DATA / name / "reference.safetensors")
    with torch.no_grad():
        latents = sae.encode(reference["x"])
        torch.testing.assert_close(latents, reference["latents"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.decode(latents), reference["reconstruction"], atol=1e-5, rtol=1e-5)


def _our_arch(name: str) -> str:
    return {"saelens-standard": "relu", "saelens-jumprelu": "jumprelu", "saelens-batchtopk-training": "jumprelu",
            "saelens-matryoshka-training": "jumprelu", "saelens-gated": "jumprelu"}.get(name, "topk")


# ---------------------------------------------------------------- same weights, three layouts, same metrics


def known_job(layer: int = 1) -> Job:
    ref = SaeRef(ModelRef("builtin:tiny-base"), "resid_post", layer,
                 train=TrainSettings(DatasetRef("builtin:pyref"), tokens=1, ctx_len=64, batch_size=1, lr=1e-3),
                 sae=SaeSettings(k=16, latents=64))
    return Job(ref, train=False, scores=())


def known_sae() -> TopKSae:
    sae = TopKSae(64, SaeSettings(k=16, latents=64))
    sae.load_state_dict(load_file(DATA / "known.safetensors"))
    return sae


def test_saelens_and_sparsify_dirs_score_like_our_format(tmp_path):
    ours = save_sae(known_sae(), known_job(), tmp_path / "ours", "model.layers.1")
    shutil.copytree(DATA / "saelens-topk", tmp_path / "saelens")
    shutil.copytree(DATA / "sparsify-run", tmp_path / "sparsify-run")
    db = tmp_path / "three.duckdb"
    spec = write_spec(tmp_path, import_spec(db, {
        "ours": (f"sae-bench:{ours}", 1), "lens": (f"saelens:{tmp_path / 'saelens'}", 1),
        "coder": (f"sparsify:{tmp_path / 'sparsify-run'}", 1)}))  # a run folder: its layers.1 is picked
    code, out = cli("run", str(spec))
    assert code == 0, out
    assert rows(db, "select label, arch, k, latents, hook_name, source like '%layers.1' from saes order by 1") == [
        ("coder", "topk", 16, 64, "model.layers.1", True), ("lens", "topk", 16, 64, "model.layers.1", False),
        ("ours", "topk", 16, 64, "model.layers.1", False)]
    table = metric_table(db, {"ours": "ours", "lens": "lens", "coder": "coder"})
    assert {m for _, m in table["ours"]} == set(CORE_METRICS)
    for metric, value in table["ours"].items():
        assert table["lens"][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), metric
        assert table["coder"][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), metric
    assert 0 < table["ours"][("pyref", "l0")] <= 16  # TopK with k = 16


# ---------------------------------------------------------------- export, then import: same metrics


def test_export_round_trip(tiny_run, tmp_path):
    _, db, code, _ = tiny_run
    assert code == 0
    base = dict(rows(db, "select layer, sae_id from saes where model = 'base'"))
    assert cli("export", str(db), str(tmp_path / "lens"), "--format", "saelens", "--model", "base")[0] == 0
    assert cli("export", str(db), str(tmp_path / "coder"), "--format", "sparsify", "--model", "base")[0] == 0

    # SAELens: a folder per SAE named by its id; metadata SAELens 6 reads
    assert sorted(p.name for p in (tmp_path / "lens").iterdir()) == sorted(base.values())
    config = json.loads((tmp_path / "lens" / base[2] / "cfg.json").read_text())
    meta = config["metadata"]
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6
    assert (meta["hook_name"], meta["model_name"], meta["sae_bench"]["sae_id"]) == (
        "model.layers.2", "builtin:tiny-base", base[2])
    assert (config["architecture"], config["k"], config["d_in"], config["d_sae"]) == ("topk", 24, 64, 96)
    # sparsify: one run folder for the model and settings, holding only hook point folders
    (run,) = list((tmp_path / "coder").iterdir())
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["layers.0", "layers.1", "layers.2"]
    assert json.loads((run / "layers.1" / "cfg.json").read_text())["sae_bench"]["sae_id"] == base[1]
    run_saes = json.loads((run / "config.json").read_text())["sae_bench"]["saes"]
    assert {hookpoint: entry["sae_id"] for hookpoint, entry in run_saes.items()} == {
        f"layers.{layer}": base[layer] for layer in (0, 1, 2)}

    imported = tmp_path / "imported.duckdb"
    spec = write_spec(tmp_path, import_spec(imported, {
        "lens2": (f"saelens:{tmp_path / 'lens' / base[2]}", 2), "coder1": (f"sparsify:{run / 'layers.1'}", 1),
        "coder0": (f"sparsify:{run}", 0)}, more_evals=PYLIB))
    code, out = cli("run", str(spec))
    assert code == 0, out
    before = metric_table(db, {"2": base[2], "1": base[1], "0": base[0]})
    after = metric_table(imported, {"2": "lens2", "1": "coder1", "0": "coder0"})
    for layer in ("0", "1", "2"):
        assert set(after[layer]) == set(before[layer]) and len(before[layer]) == 2 * len(CORE_METRICS)
        for metric, value in before[layer].items():
            assert after[layer][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (layer, metric)


def test_export_selection_and_errors(tiny_run, tmp_path):
    _, db, _, _ = tiny_run
    (sae_id,) = rows(db, "select sae_id from saes where model = 'finetune' and layer = 1")[0]
    code, out = cli("export", str(db), str(tmp_path / "one"), "--format", "saelens", "--sae", sae_id[:6])
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == [sae_id]
    sae = load_sae(tmp_path / "one" / sae_id)  # our own loader reads an exported directory too
    torch.testing.assert_close(sae.W_dec, load_sae(rows(db, "select checkpoint_path from saes where sae_id = ?",
                                                        [sae_id])[0][0]).W_dec)
    code, out = cli("export", str(db), str(tmp_path / "none"), "--format", "saelens", "--sae", "zzzz")
    assert code == 2 and "--sae zzzz: matches no finished SAE" in out and not (tmp_path / "none").exists()
    code, out = cli("export", str(db), str(tmp_path / "none"), "--format", "sparsify", "--model", "nosuch")
    assert code == 2 and "--model: no finished SAE of nosuch" in out
    code, out = cli("export", str(db), "--parquet", str(tmp_path / "pq"), "--format", "saelens")
    assert code == 2 and "earlier spelling" in out
    code, out = cli("export", str(db))
    assert code == 2 and "give the output directory" in out


# ---------------------------------------------------------------- our checkpoints are SAELens directories


def test_checkpoint_is_a_saelens_directory_and_older_ones_still_load(tmp_path):
    sae = known_sae()
    path = save_sae(sae, known_job(), tmp_path / "ckpt", "model.layers.1")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    config = json.loads((path / "cfg.json").read_text())
    assert config["metadata"]["sae_lens_version"] == "6.0.0" and config["metadata"]["hook_name"] == "model.layers.1"
    assert (config["architecture"], config["k"], config["rescale_acts_by_decoder_norm"]) == ("topk", 16, False)
    x = load_file(DATA / "saelens-topk" / "reference.safetensors")["x"]
    as_saelens, _ = import_sae(ImportSource("saelens", str(path)))
    reference = load_file(DATA / "saelens-topk" / "reference.safetensors")["latents"]  # SAELens on these weights
    torch.testing.assert_close(as_saelens.encode(x), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(load_sae(path).encode(x), reference, atol=1e-5, rtol=1e-5)
    # a checkpoint of the previous release: no SAELens version in its metadata
    del config["metadata"]["sae_lens_version"]
    (path / "cfg.json").write_text(json.dumps(config))
    torch.testing.assert_close(load_sae(path).encode(x), reference, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- hook names


@pytest.mark.parametrize("name, site", [
    ("model.layers.16", (16, "resid_post")), ("model.layers.3.mlp", (3, "mlp_out")),
    ("model.layers.3.self_attn", (3, "attn_out")), ("transformer.h.2.attn", (2, "attn_out")),
    ("gpt_neox.layers.5.attention", (5, "attn_out")), ("layers.7", (7, "resid_post")), ("h.0.mlp", (0, "mlp_out")),
    ("blocks.4.hook_resid_post", (4, "resid_post")), ("blocks.4.hook_resid_pre", (3, "resid_post")),
    ("blocks.4.hook_mlp_out", (4, "mlp_out")), ("blocks.4.hook_attn_out", (4, "attn_out")), ("my_sae", None)])
def test_hook_names_of_other_tools(name, site):
    assert site_of(name) == site


@pytest.mark.parametrize("name", ["blocks.4.attn.hook_z", "blocks.0.hook_resid_pre", "hook_embed",
                                  "model.layers.3.mlp.act_fn", "blocks.2.hook_mlp_in", "embed_tokens"])
def test_hooks_we_cannot_read_are_named(name):
    with pytest.raises(UnsupportedHook, match=name.replace(".", r"\.")):
        site_of(name)


def test_sparsify_hookpoint_names():
    assert [sparsify_hookpoint(n) for n in ("model.layers.16", "model.layers.2.mlp", "transformer.h.3.attn",
                                            "gpt_neox.layers.1.attention", "layers.4")] == [
        "layers.16", "layers.2.mlp", "h.3.attn", "layers.1.attention", "layers.4"]


# ---------------------------------------------------------------- what we cannot score: clear errors at validate


def _broken(tmp_path: Path, name: str, base: str, change) -> str:
    target = tmp_path / name
    shutil.copytree(DATA / base, target)
    change(target)
    return str(target)


def _edit_json(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_mismatches_are_one_line_errors_at_validate(tmp_path):
    def int_weights(d: Path) -> None:
        tensors = load_file(d / "sae_weights.safetensors")
        tensors["W_enc"] = tensors["W_enc"].to(torch.int8)
        save_file(tensors, d / "sae_weights.safetensors")

    cases = {
        "width": (f"saelens:{DATA / 'saelens5-topk'}", 1, "", "16-dimensional activations but the model's width"),
        "layer": (f"saelens:{DATA / 'saelens-topk'}", 2, "", "reads model.layers.1 (layer 1 resid_post) but the spec "
                                                            "attaches it to layer 2 resid_post: set layer = 1"),
        "hook": (f"saelens:{DATA / 'saelens-topk'}", 1, 'hook = "mlp_out"', 'set hook = "resid_post"'),
        "dtype": (f"saelens:{_broken(tmp_path, 'int8', 'saelens-topk', int_weights)}", 1, "",
                  "tensor W_enc has dtype I8"),
        "cfgdtype": (f"saelens:{_broken(tmp_path, 'fp8', 'saelens-topk', lambda d: _edit_json(d / 'cfg.json', dtype='float8'))}",
                     1, "", "dtype 'float8' is not one SAELens loads"),
        "transcoder_lens": (f"saelens:{_broken(tmp_path, 'tclens', 'saelens-topk', lambda d: _edit_json(d / 'cfg.json', architecture='transcoder'))}",
                            1, "", "SAELens architecture 'transcoder' is not one sae-bench scores"),
        "missing": (f"saelens:{_broken(tmp_path, 'nofile', 'saelens-topk', lambda d: (d / 'sae_weights.safetensors').unlink())}",
                    1, "", "no sae_weights.safetensors"),
        "transcoder": (f"sparsify:{_broken(tmp_path, 'tc', 'sparsify-run/layers.1', lambda d: _edit_json(d / 'cfg.json', transcode=True))}",
                       1, "", "is a transcoder"),
        "nohook": (f"sparsify:{DATA / 'sparsify-run'}", 2, "", "no hook point for layer 2 resid_post (has layers.1)"),
        "hub": ("saelens:nobody-xyz/not-a-repo/blocks.0", 1, "", "hub repo 'nobody-xyz/not-a-repo' could not be fetched"),
    }
    tables = "".join(f'[saes.{name}]\nsource = "{source}"\nmodel = "base"\nlayer = {layer}\n{extra}\n\n'
                     for name, (source, layer, extra, _) in cases.items())
    text = f'[suite]\nname = "bad"\n\n[models.base]\nid = "builtin:tiny-base"\n\n{tables}' + EVALS.format(more="")
    spec = write_spec(tmp_path, text)
    os.environ["HF_HUB_OFFLINE"] = "1"  # conftest sets it too; the hub case must fail at once either way
    start = time.monotonic()
    code, out = cli("validate", str(spec))
    assert time.monotonic() - start < 30
    assert code == 2
    lines = [line for line in out.splitlines() if line.startswith("error ")]
    assert len(lines) == len(cases), out
    for name, (*_, expected) in cases.items():
        (line,) = [line for line in lines if f"saes.{name}.source:" in line]
        assert expected in line, line


def test_the_template_spec_for_your_own_sae_validates(monkeypatch):
    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)  # its source is relative to the repository root, as the README runs it
    code, out = cli("validate", str(root / "specs" / "mine.toml"))
    assert code == 0 and "1 SAE(s)" in out, out
